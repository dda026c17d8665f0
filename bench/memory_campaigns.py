"""The scripted campaigns of bench/memory.py: facts the players plant early, ordinary turns, then one
probe per fact in other words. A fact counts only through its keywords, which its probe (and the rest of
the script) lacks: bench/memory.py checks that before it plays.

"first" is the campaign recall was tuned on (2026-11); "second" was written for issue 23 with other
players, another place and other facts, to see whether the tuning holds outside it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    id: str
    player: str
    text: str  # the action that plants the fact
    keywords: tuple[str, ...]  # case-insensitive, whole words
    probe: str  # the action that touches it again, in other words


@dataclass(frozen=True)
class Campaign:
    name: str
    premise: str
    players: dict[str, int]  # name -> Discord id
    facts: tuple[Fact, ...]
    fillers: tuple[tuple[str, str], ...]  # (player, action)


FIRST = Campaign(
    "first",
    "The free port of Saltmere on a storm-wracked coast, where four companions seek their fortune "
    "and old debts come due.",
    {"Bram": 1, "Ilsa": 2, "Kel": 3, "Cira": 4},
    (
        Fact("ship", "Bram", "I name my ship the Marigold and paint the name on her bow in gold letters.",
             ("Marigold",), "I ask the harbourmaster whether my vessel is ready to sail."),
        Fact("password", "Ilsa", "I whisper to the others that the password to the temple vault is 'copper wren'.",
             ("copper wren", "wren"), "At the temple vault door I speak the secret word I was told."),
        Fact("debt", "Kel", "I owe the smith Tolda thirty gold crowns for my new sword.",
             ("Tolda", "thirty gold"), "I visit the blacksmith who forged my blade to settle what I owe her."),
        Fact("god", "Cira", "I pray to our god Vhal, the drowned one, and pour salt into the waves.",
             ("Vhal",), "I kneel at the shore and pray to the deity our people worship."),
        Fact("horse", "Bram", "I buy a grey mare at the market and call her Thistlewick.",
             ("Thistlewick",), "I saddle my horse and whisper her name to calm her."),
        Fact("buried", "Ilsa", "I bury my mother's silver locket under the split oak behind the Oxbow Mill.",
             ("Oxbow", "locket"), "I go back to dig up the keepsake I hid in the ground."),
        Fact("allergy", "Kel", "I warn everyone that I am deathly allergic to saffron; it makes my throat close.",
             ("saffron",), "The cook offers me a spiced stew, and I ask whether it holds anything that could harm me."),
        Fact("promise", "Cira", "I swear to the orphan Pell that I will bring back his father's brass lantern.",
             ("Pell", "lantern"), "I remember the oath I made to the little boy and look for what I promised him."),
        Fact("number", "Bram", "Our map says the hidden cave lies exactly 417 paces north of the standing stone.",
             ("417",), "I count my steps from the old marker toward the secret cave."),
        Fact("sister", "Ilsa", "My sister Odrienne was carried off by the slavers of Kesh last winter.",
             ("Odrienne", "Kesh"), "I ask the freed prisoners whether anyone has seen my missing sibling."),
        Fact("hiding", "Kel", "I hide the stolen crown inside a hollow wheel of goat cheese in the cellar.",
             ("cheese",), "I check that the royal treasure I took is still safe in its hiding place."),
        Fact("familiar", "Cira", "My familiar is a one-eyed raven named Quillon who rides on my shoulder.",
             ("Quillon", "raven"), "I call my animal companion back to me with a soft whistle."),
    ),
    (
        ("Bram", "I walk down to the docks and watch the fishermen mend their nets."),
        ("Ilsa", "I buy a loaf of dark bread and a jug of cider at the corner stall."),
        ("Kel", "I haggle with a cloth merchant over the price of a warm wool cloak."),
        ("Cira", "I look up at the sky and guess whether the rain will hold off until evening."),
        ("Bram", "I draw my cudgel and chase the rats out of the tavern's storeroom."),
        ("Ilsa", "I sit by the fire and sharpen my knives one by one."),
        ("Kel", "I ask the innkeeper what news has come from the capital this week."),
        ("Cira", "I help an old woman carry her baskets of apples up the hill."),
        ("Bram", "I play a game of dice with two sailors and lose a few coppers."),
        ("Ilsa", "I climb the bell tower to look out over the rooftops of the town."),
        ("Kel", "I stretch my legs with a long walk along the sea wall."),
        ("Cira", "I trade a song for a bowl of fish soup at the harbour kitchen."),
        ("Bram", "I patch the hole in my boot with a strip of leather."),
        ("Ilsa", "I follow a stray cat through the narrow alleys of the market."),
        ("Kel", "I challenge a dockworker to an arm-wrestling match."),
        ("Cira", "I wash my travelling clothes in the stream behind the inn."),
        ("Bram", "I listen to a street preacher warning about the coming storms."),
        ("Ilsa", "I count the coins left in my purse and frown."),
        ("Kel", "I kick a giant rat that leaps at me from a pile of barrels."),
        ("Cira", "I gather herbs in the meadow outside the town gate."),
        ("Bram", "I ask a fisherman where the best oysters are sold."),
        ("Ilsa", "I take shelter under an awning while a sudden squall passes."),
        ("Kel", "I help the town guard push a stuck cart out of the mud."),
        ("Cira", "I read the notices nailed to the board outside the town hall."),
        ("Bram", "I eat a plate of fried eels and wash it down with ale."),
        ("Ilsa", "I bargain with a tinker for a new set of lockpicks."),
        ("Kel", "I watch the ships come in as the fog rolls over the water."),
        ("Cira", "I light a candle in the window of our rented room."),
        ("Bram", "I chop firewood for the innkeeper in exchange for breakfast."),
        ("Ilsa", "I wander through the fish market and hold my nose."),
        ("Kel", "I spar with a wooden practice sword in the inn's courtyard."),
        ("Cira", "I ask a child selling flowers where she lives."),
    ),
)

SECOND = Campaign(
    "second",
    "The river town of Ashford Crossing at the edge of the wild marches, where four travellers wait out "
    "the thaw for the spring caravans.",
    {"Mira": 11, "Tobin": 12, "Yusuf": 13, "Dagny": 14},
    (
        Fact("loan", "Tobin", "I borrow eighty silver marks from the moneylender Hesketh and sign his ledger.",
             ("Hesketh", "eighty"), "I count out coins to pay back the man who lent me money."),
        Fact("walnuts", "Mira", "I tell the cook that I can never eat walnuts: one bite and my face swells shut.",
             ("walnuts", "walnut"), "A baker offers me a sweet cake with nuts on top, and I ask whether it is safe for me."),
        Fact("boat", "Yusuf", "Our riverboat is called the Heron's Lament, and I carve the name into her stern.",
             ("Heron", "Lament"), "I ask the dock boy to fetch our boat and row it to the jetty."),
        Fact("stallion", "Dagny", "My warhorse is a black stallion named Corvalan with a white blaze.",
             ("Corvalan",), "I go to the stable and feed an apple to my steed."),
        Fact("code", "Mira", "The strongbox we took from the bandits opens with the code 3817.",
             ("3817",), "I kneel by the iron chest and try to open its lock with the digits we were given."),
        Fact("vow", "Tobin", "I promise the widow Marjeta that I will carve a headstone for her husband.",
             ("Marjeta", "headstone"), "I remember what I vowed to the grieving woman and pick up my chisel."),
        Fact("enemy", "Yusuf", "The masked killer who burned my village calls himself the Grey Fennick.",
             ("Fennick",), "I ask the guards whether they have news of the murderer who torched my home."),
        Fact("tattoo", "Dagny", "I show the others the coiled serpent tattoo on my back, the mark of the Vask brotherhood.",
             ("Vask", "serpent"), "A stranger asks about the marking on my skin and which gang it belongs to."),
        Fact("arrows", "Mira", "I stash our spare arrows in the chimney of the abandoned tannery.",
             ("tannery", "chimney"), "We are running out of ammunition, so I go to fetch the supply I hid earlier."),
        Fact("knee", "Tobin", "My left knee was shattered at the siege of Dunmarrow, so I cannot climb.",
             ("Dunmarrow", "knee"), "The others want to scale the cliff, and I explain the old injury that stops me."),
    ),
    (
        ("Yusuf", "I sit on the riverbank and skip flat stones across the water."),
        ("Dagny", "I brush the mud out of my cloak and hang it to dry by the hearth."),
        ("Mira", "I ask the ferryman how long the ice will take to melt upstream."),
        ("Tobin", "I help a farmer unload sacks of barley from his wagon."),
        ("Yusuf", "I buy a bowl of hot porridge with honey from the market stall."),
        ("Dagny", "I practise my sword forms alone in the snowy yard behind the inn."),
        ("Mira", "I climb the watchtower and look across the marshes for smoke."),
        ("Tobin", "I trade gossip with the miller's wife about the new tax collector."),
        ("Yusuf", "I mend a torn strap on my pack with needle and thread."),
        ("Dagny", "I chase a goose that has wandered into the common room."),
        ("Mira", "I sketch a map of the town's crooked streets in my notebook."),
        ("Tobin", "I play a round of knucklebones with the stable hands and win a copper."),
        ("Yusuf", "I fish from the old stone bridge until the light fades."),
        ("Dagny", "I ask the blacksmith's apprentice to sharpen my axe."),
        ("Mira", "I listen to a travelling minstrel sing about a lost princess."),
        ("Tobin", "I chop kindling for the widow next door because her son is away."),
        ("Yusuf", "I watch the clouds gather over the hills and smell the coming rain."),
        ("Dagny", "I drink a mug of mulled ale and warm my hands on it."),
        ("Mira", "I buy new bowstrings from a pedlar with a crooked hat."),
        ("Tobin", "I sweep the snow off the inn's front steps."),
        ("Yusuf", "I ask the priest at the chapel whether the roads south are safe."),
        ("Dagny", "I wrestle a drunk logger who insults my mother."),
        ("Mira", "I follow a set of fox tracks into the birch wood and back."),
        ("Tobin", "I patch a leaking bucket with pitch."),
        ("Yusuf", "I help the innkeeper roll a heavy barrel down into the cellar."),
        ("Dagny", "I polish my helmet until it shines."),
        ("Mira", "I count the caravan wagons already camped outside the walls."),
        ("Tobin", "I warm my feet by the fire and tell a story about my grandfather."),
        ("Yusuf", "I bargain for a warm fur hat at the tailor's shop."),
        ("Dagny", "I walk the town wall at dusk and greet the sentries."),
        ("Mira", "I feed crumbs to the sparrows on the windowsill."),
        ("Tobin", "I ask a caravan master how much he pays for guards."),
    ),
)

CAMPAIGNS = {c.name: c for c in (FIRST, SECOND)}
