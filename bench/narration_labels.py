"""Narrations labelled by hand, the judge of the voice detector (engine.table.narration.voice_faults).

Written for the bench as a DM (or a model playing one) might write them, 1-4 sentences each, and labelled
by what a reader would say, not by what the detector does. A narration is off voice when it leaves the DM's
second/third person: a sentence in the first person outside quoted speech ("I", "my", "we", "me", "I'm"...),
a line written for a player ("Bram: I draw my sword", or words put in a player's mouth), or an echo of the
prompt or of a script's labels ("Player:", "Dungeon:", "You are the Dungeon Master", "What the players do
now:"). In voice: the second or third person, NPCs' speech in quotes of any kind (theirs may say "I"),
players named without a colon, Roman numerals.

Used by bench/narration.py (--judge-only prints the detector's precision and recall on it) and
tests/test_narration_labels.py. Plain data: nothing here imports the engine.
"""
from __future__ import annotations

from typing import NamedTuple

TRIO = frozenset({"Bram", "Ilsa", "Kel"})  # the bench's players
PAIR = frozenset({"Mira", "Tobin"})  # another table's, so the set does not lean on three names


class Labelled(NamedTuple):
    text: str
    names: frozenset[str]  # the players' names at that table
    off_voice: bool
    reason: str


OFF = [
    # --- the narrator in the first person, outside any quote ---
    Labelled("I look up at the frozen bell tower as the wind howls through Harrowdeep. The snow in the square "
             "is knee-deep.", TRIO, True, "narrator says I"),
    Labelled("The innkeeper sets three mugs of cider on the table. My hands are numb from the cold, so I wrap "
             "them around the warm clay.", TRIO, True, "narrator's my / I"),
    Labelled("We follow the tracks down to the river, where the ice groans under every step.", TRIO, True,
             "narrator says we"),
    Labelled("The wolf circles you, hackles raised, drool freezing on its jaws. Let me tell you, it has not "
             "eaten in days.", TRIO, True, "narrator's aside with me"),
    Labelled("I'm not sure the stranger is telling the truth, but he points a crooked finger toward the old "
             "mine.", TRIO, True, "I'm outside quotes"),
    Labelled("The rope bridge sways beneath you. Honestly, I wouldn't trust those ropes with a cat.", TRIO, True,
             "narrator's opinion with I"),
    Labelled("As your Dungeon Master, I rule that the lock gives way on the second try. The chest creaks open "
             "to reveal a bundle of letters.", TRIO, True, "DM speaks of itself"),
    Labelled("We now return to our heroes, who stand shivering at the mouth of the mine.", TRIO, True,
             "we / our as narrator"),
    Labelled("Me, I'd take the left tunnel. The right one smells of sulphur and old bones.", TRIO, True,
             "Me / I'd opening the narration"),
    Labelled("The candle gutters out and the dark swallows the room. In my experience, that is never a good "
             "sign.", TRIO, True, "my in the narrator's aside"),
    Labelled("The dragon lowers its great head and smoke curls from its nostrils. I'll be honest with you all: "
             "this fight may be too much for us.", TRIO, True, "I'll / us as narrator"),
    Labelled("The priestess bows her head. Our thanks go with you, she says, and the bell will ring again at "
             "dawn.", TRIO, True, "NPC speech with our, left unquoted"),
    Labelled("Tobin slides the lockpick in and twists. I hear a click, and the door swings inward onto a dusty "
             "stair.", PAIR, True, "I hear: narrator as a character"),
    Labelled("The market is loud with hawkers and gulls. Mira and I push through the crowd toward the "
             "fishmonger's stall.", PAIR, True, "narrator plays alongside a player"),
    # --- a player's line written by the model ---
    Labelled("Rain lashes the harbour as the smugglers' boat drifts in without a light.\nBram: I draw my sword "
             "and step onto the gangplank.", TRIO, True, "a player's line after the narration"),
    Labelled("Ilsa: I check the door for traps.\nThe door is old oak bound with iron, and a thin wire glints "
             "along its base.", TRIO, True, "leading player's line"),
    Labelled("The ogre roars and swings its club at Bram, missing by a hair. Bram: I duck under it and stab at "
             "its knee!", TRIO, True, "player's line mid-paragraph"),
    Labelled("Snow falls softly on the rooftops of Harrowdeep.\n**Ilsa:** *I climb the chimney to get a better "
             "look.*", TRIO, True, "player's line in markdown"),
    Labelled("You hear footsteps on the floor above. Kel: We should hide. The footsteps stop right over your "
             "heads.", TRIO, True, "player's line inside the narration"),
    Labelled("The guard captain studies your papers for a long moment.\nTobin: Is there a problem, officer?",
             PAIR, True, "player's line without first person"),
    Labelled('Ilsa glances back at the dark tunnel. "We should turn back," Ilsa whispers. "This place is '
             'wrong."', TRIO, True, "words put in a player's mouth"),
    # --- echoes of the prompt or a script's labels ---
    Labelled("Player: Kel casts a spell of light.\nDungeon: The tunnel fills with a pale blue glow.", TRIO, True,
             "script labels Player:/Dungeon:"),
    Labelled("Dungeon: The cave mouth yawns before you, black and cold, and something inside breathes.", TRIO,
             True, "script label Dungeon:"),
    Labelled("You are the Dungeon Master of a role-playing game. The thief darts down the alley and vanishes "
             "into the crowd.", TRIO, True, "echoes the system prompt"),
    Labelled("The guard waves you through the gate.\nWhat the players do now:\nBram: I ask him about the bell.",
             TRIO, True, "echoes the prompt's header and a player's line"),
    Labelled("The merchant counts the coins twice and nods.\n\nUser: continue the story\nAssistant: The merchant "
             "smiles and hands over the key.", PAIR, True, "chat-script labels"),
]

IN = [
    # --- NPCs speak in quotes of every kind ---
    Labelled('The innkeeper wipes a mug and squints at you. "I saw no one near the temple that night," he says, '
             '"and I sleep lightly."', TRIO, False, "NPC's I in straight double quotes"),
    Labelled("“We closed that mine years ago,” the old miner mutters. “Nobody goes down there now, not if they "
             "want to come back.”", TRIO, False, "NPC's we in curly quotes"),
    Labelled("The elven envoy bows low. «I bring word from the Silverwood, and my queen is not pleased.»", TRIO,
             False, "NPC's I / my in guillemets"),
    Labelled("The ranger shrugs and spits into the snow. 'I lost the trail at the river,' she admits.", TRIO,
             False, "NPC's I in single quotes"),
    Labelled("The dwarf grins, showing a gold tooth. 'Me? I'm just a humble trader,' he says, spreading his "
             "hands.", TRIO, False, "NPC's Me / I'm in single quotes"),
    Labelled('The stranger looks up from his cup. "I know who you are. I know what you seek. And I know it is '
             'not here."', TRIO, False, "one quote over several sentences, each with I"),
    Labelled('"Listen well. I will say this only once," the hermit rasps. "The bell was never stolen. I hid '
             'it."', TRIO, False, "NPC quote broken by a speech tag"),
    Labelled('The thief squirms against the ropes. "Please! We only took it because the Guild made us," he '
             'sobs.', TRIO, False, "NPC's we / us"),
    Labelled('A voice booms from the darkness: "Who dares enter my halls?"', TRIO, False,
             "NPC's my after a colon"),
    Labelled("The captain of the guard raises a gauntleted hand.\n\"Halt! State your business, or turn back to "
             "the pass.\"", TRIO, False, "NPC quote on its own line"),
    Labelled('The priestess smiles at Ilsa. "You have done us a great kindness. Our temple will not forget '
             'it."', TRIO, False, "NPC's us / our, addressed to a player"),
    Labelled("The goblin chief leans forward on his throne of bones. «We have your friend,» he hisses. «Bring us "
             "the bell, and he lives.»", TRIO, False, "NPC's we / us in guillemets"),
    Labelled('The innkeeper calls Ilsa over with a wave: "Mind the step, miss, I only just mopped it."', TRIO,
             False, "an NPC speaks to a player by name"),
    Labelled('The note pinned to the door reads: "Meet me at the old mill at midnight. Come alone."', TRIO, False,
             "written words quoted, with me"),
    Labelled('The old map shows a tunnel marked "Shaft Three", and beside it, in faded ink, the words "we never '
             'came back".', TRIO, False, "quoted lowercase we"),
    Labelled('Mira haggles hard, and the fishmonger throws up his hands. "Fine, fine! My children will starve, '
             'but take it."', PAIR, False, "NPC's my at another table"),
    # --- second and third person, names without a colon, numerals ---
    Labelled("You push open the heavy door and step into the warm common room of the Frozen Stag. The smell of "
             "roasting meat fills the air.", TRIO, False, "second person"),
    Labelled("Bram swings his axe in a wide arc, and the wolf yelps and retreats into the dark.", TRIO, False,
             "third person, a player named"),
    Labelled("Bram, you feel the rotten planks shift beneath your boots. Ilsa, you catch the glint of a "
             "tripwire just ahead.", TRIO, False, "players addressed by name with a comma"),
    Labelled("Bram says nothing; he simply lifts the bell onto his shoulder and starts down the mountain.", TRIO,
             False, "a player's name before says, no speech"),
    Labelled("Kel, Ilsa and Bram stand together at the mouth of the mine, breath steaming in the frozen air.",
             TRIO, False, "several names, no colon"),
    Labelled("Kel's spell finds what it seeks: a faint violet glow around the stranger's ring. Whatever it is, "
             "it is old magic.", TRIO, False, "a player's name with 's before a colon"),
    Labelled("Above the altar hangs a portrait of Queen Maren I, her painted eyes following you across the "
             "nave.", TRIO, False, "Roman numeral I"),
    Labelled("Tobin opens the dusty ledger to Chapter I and runs a finger down the list of debtors.", PAIR, False,
             "Chapter I"),
    Labelled("Your lantern sputters as you descend. The air grows colder, and you feel the whole weight of the "
             "mountain above you.", TRIO, False, "second person, descriptive"),
    Labelled("The bell is back in its tower. As it rings out over Harrowdeep, the townsfolk pour into the streets "
             "to cheer your names.", TRIO, False, "second person ending"),
]

LABELS: list[Labelled] = OFF + IN
