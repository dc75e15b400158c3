"""Everyday English words (written for this project), so that copied values come from a space too large to memorise.

The first people corpus drew file names, texts and search patterns from a few dozen words each;
the model learned those words instead of copying, and wrote ``back.txt`` for a request's
``year.txt``. Values drawn from these ~1,000 words make the request the only place to find them.
"""

from __future__ import annotations

import random

COMMON = sorted(
    set(
        """
        able about above accept account across action active actor add address admit adult advice afraid after
        afternoon again age agent agree ahead air airport alarm album alert alive allow almost alone along already
        also always amount angle angry animal answer apart apple april area argue arm army around arrive art
        article artist ask asleep attack attend aunt author autumn avoid awake award away baby back bacon bad bag
        bake balance ball banana band bank bar base basic basket bath battery beach bean bear beat beauty bed bee
        beef before begin behind believe bell belt bench berry best better bicycle big bike bill bird birth bit
        bite bitter black blade blank blanket blind block blood blow blue board boat body boil bone bonus book
        boot border boring borrow boss both bottle bottom bowl box brain branch brave bread break breakfast brick
        bridge brief bright bring broad brother brown brush bucket budget build bulb bunch burn bus busy butter
        button buy cabin cable cake call calm camera camp can candle candy cap captain car card care carpet carrot
        carry case cash castle cat catch cause ceiling cell center chain chair chalk chance change channel chapter
        charge chart cheap check cheese chef cherry chess chest chicken chief child chip choice choose church
        circle city claim class clean clear clerk click climb clock close cloth cloud club coach coast coat code
        coffee coin cold collar collect color comb come comfort common company compare complete concert
        confirm contact content contest cook cookie cool copper copy corner correct cost cotton couch count
        country county couple course court cousin cover cow crack craft crash cream credit crew crop cross crowd
        crown cup cupboard curtain curve custom cycle daily damage dance danger dark data date daughter day dead
        deal dear debt decide deep deer degree delay deliver demand dentist depth design desk detail device
        diet dinner direct dirt discount dish doctor dog doll dollar door double draft dragon drama draw drawer
        dream dress drink drive driver drop drum dry duck dust duty eager eagle early earth east easy eat edge
        egg eight elbow elder empty end enemy energy engine enough enter entry envelope equal error escape
        evening event exam example exit expert extra eye face fact factory fair fall family fan farm fast father
        fault favor fear feather fee feed feel fence festival fever field fight figure file film final finger
        finish fire first fish fit five flag flame flat flight floor flour flower fluid fly focus fog fold
        folder follow food foot force forest forget fork form fort forward four fox frame free fresh friday fridge
        friend frog front frost fruit fuel full fun funny future gallery game gap garage garden garlic gas gate
        gather gear gentle ghost gift girl give glad glass glove glue goal goat gold golf good goose grade grain
        grand grape grass gray great green grid ground group grow guard guess guest guide guitar habit hair half
        hall hammer hand handle happy harbor hard hat hawk head health heart heat heavy height hello helmet help
        hero hidden high hill hint history hobby hold hole holiday home honey hood hook hope horse hospital host
        hotel hour house hunger hurry husband ice idea image inch income index infant info ink insect inside
        invite iron island item jacket jam january jar jazz jeans jelly job join joke journey joy judge juice july
        jump june jungle junior just keen keep kettle key kick kid kind king kitchen kite knee knife knock label
        labor lace ladder lady lake lamp land lane language laptop large laser last late laugh lawn layer lazy
        lead leaf learn least leather leave left leg lemon lend length lesson letter level library lid life lift
        light limit line link lion lip liquid list listen little live loan local lock log long loop lost loud
        love low luck lunch machine magic mail main major maker mango manual map marble march margin mark market
        mask master match math matter maybe meal measure meat medal media meet melon member memo memory menu
        mercy mess metal meter method middle midnight mild milk mind minor minute mirror miss mission mix mobile
        model modern moment monday money monkey month mood moon morning mother motor mountain mouse mouth move
        movie much mud muscle museum music nail name narrow nation native nature near neck need needle nerve nest
        net never new news next nice night nine noble noise noon normal north nose note notice novel number nurse
        nut oak object ocean october offer office often oil okay old olive once onion open opera option orange
        orbit order organ other oven owner oxygen pack page pain paint pair palace pan panel paper parade parcel
        parent park part party pass past path patient pattern pause peace peach peak pear pen pencil people
        pepper perfect period person pet phone photo piano pick picnic picture piece pig pill pilot pine pink pipe
        pizza place plain plan plane planet plant plate play please plenty plot plus pocket poem poet point
        police polish pond pool poor popular port post pot potato pound powder power practice press price pride
        prince print prize problem profit program promise proof proper public pull pump pupil purple push puzzle
        quarter queen quick quiet quite rabbit race radio rail rain raise range rapid rate raw reach read ready
        real reason receipt record recipe red region remind rent repair repeat reply report rescue rest result
        return review reward rhythm rice rich ride right ring risk river road robot rock roof room root rope rose
        rough round route royal rubber rule ruler run rural sad safe sail salad salary salt same sample sand
        saturday sauce save scale scarf scene school science score screen sea search season seat second secret
        seed select sell send senior sense series serve service session seven shade shadow shape share shark sharp
        sheep shelf shell shift shine ship shirt shock shoe shop short shoulder show shower side sign signal
        silk silver simple sing sister size skill skin skirt sky sleep slice slide slow small smart smile smoke
        snack snake snow soap soccer sock sofa soft soil solar soldier solid song soon sort sound soup south space
        spare speak speed spell spend spice spider spirit spoon sport spot spring square staff stage stairs stamp
        stand star start state station stay steak steam steel step stick still stock stone stop store storm story
        stove straw street strike string strong student studio study style sugar suit summer sun sunday super
        supply sure surface surprise swan sweet swim switch symbol table tail talent talk tall tank tape target
        task taste tax taxi tea teacher team tear ten tennis tent term test text thank theme thick thin thing
        third thread three throat thunder thursday ticket tide tidy tiger tile time tiny tip tired title toast
        today toe together toilet token tomato tone tongue tool tooth top topic total touch tour towel tower town
        toy track trade traffic train travel tray treat tree trend trial trick trip truck true trust truth try
        tuesday tune tunnel turn twelve twin type uncle under unit upper urban usual valley value van vase
        velvet vendor verse video view village violin visit voice volume vote wage wait walk wall wallet war warm
        wash watch water wave wax way weak wealth weather wedding week weight welcome west wet whale wheat wheel
        while whisper white whole wide wife wild win wind window wine wing winter wire wise wish wolf woman wonder
        wood wool word work world worry wrist write yard year yellow yes yesterday yoga young youth zebra zero zone
        """.split()
    )
)


def common_word(rng: random.Random, min_len: int = 1) -> str:
    """One everyday word of at least ``min_len`` letters."""
    while True:
        word = rng.choice(COMMON)
        if len(word) >= min_len:
            return word


def common_words(rng: random.Random, low: int = 2, high: int = 4) -> str:
    """A few everyday words in a row, as a short note would have them."""
    return " ".join(common_word(rng) for _ in range(rng.randint(low, high)))
