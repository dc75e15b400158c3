"""Word pools the synthetic corpus draws from; values are built from these and from syllables."""

NOUNS = """
apple river garden window table letter city bridge forest market engine paper music
planet signal report budget invoice ticket order server client folder record camera
rocket battery printer student teacher doctor station harbor island valley mountain
desert ocean cloud storm winter summer autumn spring morning evening kitchen library
museum office factory school hospital airport hotel restaurant bakery farm village
castle tower lamp chair clock mirror pencil notebook bottle basket blanket candle
coffee bread cheese honey lemon orange pepper salt sugar tomato potato onion carrot
rabbit horse tiger eagle salmon turtle dolphin falcon spider beetle sparrow wolf
account address amount answer balance channel comment country course customer
device domain event file format group image item language level limit message
metric model name network note number option owner page password payment period
price product profile project query queue region request resource result role
schedule score section session setting size source status step stock storage
summary task team temperature text theme time title token topic total track unit
user value version volume weather width word zone color date email label path
""".split()

VERBS = """
get set find create update delete list send compute fetch check convert book cancel
schedule calculate search add remove count sort filter merge split validate load
save export import start stop reset rename move copy open close read write track
register notify translate estimate predict measure resolve submit approve reject
""".split()

ADJECTIVES = """
red blue green yellow small large quick slow bright dark quiet loud warm cold
fresh old new early late simple clear heavy light soft sharp smooth rough calm
happy busy empty full rare common final public private local global daily weekly
""".split()

CITIES = """
Paris London Tokyo Berlin Madrid Rome Vienna Prague Oslo Lisbon Dublin Athens
Cairo Lima Quito Seoul Delhi Sydney Toronto Denver Boston Austin Chicago Miami
""".split()

NAMES = """
Alice Bob Carol David Emma Frank Grace Henry Irene Jack Karen Leo Maria Nina Oscar
Paula Quinn Rosa Sam Tina Uma Victor Wendy Xavier Yara Zoe
""".split()

SYLLABLES = """
ba be bi bo bu da de di do du fa fe fi fo ka ke ki ko ku la le li lo lu ma me mi mo mu
na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo
za ze zi zo zu bar ten mol kin dor vex lun tam rix gor pel sun
""".split()

EXTENSIONS = ["txt", "md", "py", "json", "csv", "log", "yaml", "toml", "ini", "cfg"]
DIRS = ["", "", "", "src/", "data/", "notes/", "docs/", "tests/", "logs/", "config/", "out/"]

FACTS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("What does RAM stand for?", "RAM stands for random access memory."),
    ("What does HTML stand for?", "HTML stands for HyperText Markup Language."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest ocean."),
    ("Which planet is known as the red planet?", "Mars is known as the red planet."),
    ("What is water made of?", "Water is made of hydrogen and oxygen."),
    ("What language is mostly spoken in Brazil?", "Portuguese is mostly spoken in Brazil."),
    ("What is Python?", "Python is a popular programming language known for its readable syntax."),
    ("What is a list in Python?", "A list is an ordered, mutable collection of items, written with square brackets."),
    ("What is a function?", "A function is a named block of code that takes inputs and returns a result."),
    (
        "What is JSON?",
        "JSON is a text format for structured data made of objects, arrays, strings, numbers, booleans and null.",
    ),
    ("What is a file path?", "A file path is the location of a file in a folder tree, such as docs/readme.md."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("What is a noun?", "A noun is a word that names a person, place, thing or idea."),
    ("What is recursion?", "Recursion is when a function calls itself to solve a smaller version of the same problem."),
    ("What is a variable?", "A variable is a name that refers to a value in a program."),
    (
        "Why is the sea salty?",
        "The sea is salty because rivers carry dissolved minerals into it and evaporation leaves the salt behind.",
    ),
]

SMALL_TALK = [
    ("Hi", "Hello! How can I help you today?"),
    ("Hello!", "Hi there! What can I do for you?"),
    ("Hey", "Hey! What would you like to do?"),
    ("Good morning", "Good morning! How can I help?"),
    ("Thanks!", "You're welcome!"),
    ("Thank you.", "You're welcome. Let me know if you need anything else."),
    (
        "Who are you?",
        "I am a small local assistant. I can answer simple questions and use tools to read and write files and run Python.",
    ),
    ("What can you do?", "I can run Python code, read, write and edit files, list folders and search files for text."),
    ("How are you?", "I'm doing well, thanks for asking. How can I help?"),
    ("Tell me a joke.", "Why did the programmer quit his job? Because he didn't get arrays."),
    ("Say hello.", "Hello!"),
    ("Bye", "Goodbye! Have a nice day."),
    ("Are you there?", "Yes, I'm here. What do you need?"),
    ("Can you help me?", "Of course. Tell me what you need."),
    ("Nice work.", "Thank you!"),
    ("ok", "Great. Anything else?"),
]


# The agent's own built-in tool definitions (``tools.builtin``) as the model sees them, copied as
# data: the corpus shows them verbatim most of the time, so the shipped model meets at run time
# exactly the tools block it was trained on. optiq_runtime must not import tools/.
AGENT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "run_python",
            "description": "Run Python code in a sandbox and return what it printed and the value of its last line. Use it for arithmetic, data processing and checking logic. Allowed imports: math, cmath, statistics, json, re, datetime, decimal, fractions, random, itertools, functools, collections, string, textwrap, heapq, bisect. No files, network or other modules; names starting with '_' are not allowed. Each call starts fresh: define everything you use.",
            "parameters": {
                "properties": {
                    "code": {
                        "description": "Python source to run; the value of a final expression is shown.",
                        "type": "string",
                    }
                },
                "required": ["code"],
                "type": "object",
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a UTF-8 text file in the workspace.",
            "parameters": {
                "properties": {"path": {"description": "File path relative to the workspace.", "type": "string"}},
                "required": ["path"],
                "type": "object",
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Create or overwrite a text file in the workspace with the given content.",
            "parameters": {
                "properties": {
                    "path": {
                        "description": "File path relative to the workspace; folders are created.",
                        "type": "string",
                    },
                    "content": {
                        "description": "The whole new content of the file.",
                        "maxLength": 1000000,
                        "type": "string",
                    },
                },
                "required": ["path", "content"],
                "type": "object",
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace one exact, unique snippet of a file in the workspace with new text.",
            "parameters": {
                "properties": {
                    "path": {"description": "File path relative to the workspace.", "type": "string"},
                    "old": {
                        "description": "Exact text to replace; it must occur exactly once in the file.",
                        "type": "string",
                    },
                    "new": {"description": "Text to put in its place.", "type": "string"},
                },
                "required": ["path", "old", "new"],
                "type": "object",
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_dir",
            "description": "List a folder in the workspace; folders end with '/'.",
            "parameters": {
                "properties": {
                    "path": {"default": ".", "description": "Folder path relative to the workspace.", "type": "string"}
                },
                "type": "object",
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_files",
            "description": "Find lines containing plain text in the workspace's files; answers 'file:line: text'.",
            "parameters": {
                "properties": {
                    "pattern": {
                        "description": "Plain text to look for (not a regular expression).",
                        "minLength": 1,
                        "type": "string",
                    },
                    "path": {
                        "default": ".",
                        "description": "Folder (or file) to search, relative to the workspace.",
                        "type": "string",
                    },
                },
                "required": ["pattern"],
                "type": "object",
            },
        },
    },
]

# The agent also offers run_shell (after the six above): every agent session shows all seven, so the
# people corpus (people.py) shows them too, in the registry's order.
RUN_SHELL_TOOL = {
    "type": "function",
    "function": {
        "name": "run_shell",
        "description": "Run a shell command (/bin/sh -c) in the workspace folder and return its exit code and output. Use it to list, search and inspect files, run tests and build tools, and check your edits (git status, git diff). No network; nothing outside the workspace can be written, and outside it only the system's programs and libraries can be read.",
        "parameters": {
            "properties": {
                "command": {
                    "description": "The shell command line, run with /bin/sh -c in the workspace.",
                    "minLength": 1,
                    "type": "string",
                }
            },
            "required": ["command"],
            "type": "object",
        },
    },
}
SESSION_TOOLS = [*AGENT_TOOLS, RUN_SHELL_TOOL]
