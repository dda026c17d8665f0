"""Pictures of the scene: the AUTOMATIC1111 client, the painter's queue, the picture prompt."""
from engine.pictures.client import PictureClient, PictureSettings, Progress
from engine.pictures.painter import Painter
from engine.pictures.scene import PicturePrompt

__all__ = ["Painter", "PictureClient", "PicturePrompt", "PictureSettings", "Progress"]
