"""Stage 1 and 2 of the offline parse: normalise the text, and read it into lexemes against a lexicon.

The lexicon is built from the live cluster (node ids, process names,
services, methods) plus fixed synonym tables for verbs, metrics and nouns.
A word that is in neither is corrected against the lexicon with rapidfuzz
when one word is clearly meant (the correction is reported); otherwise it
stays ``unknown`` and the parse refuses, naming it.  Node ids are never the
result of a correction: a mistyped node id is refused, not guessed.

Pure logic, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import OSA, Indel
from rapidfuzz.process import extract

from cloudisense.tools import ClusterView
from cloudisense.tools._cluster import BUILTIN_METHODS

# ---- synonym tables (phrases are tuples of words, longest match wins) -------------------------

VERBS: dict[str, str] = {
    "restart": "restart", "re-start": "restart", "recycle": "restart", "bounce": "restart", "reboot": "restart",
    "reload": "restart", "cycle": "restart", "respawn": "restart", "kick": "restart", "relaunch": "restart",
    "re-launch": "restart", "reset": "restart", "rst": "restart", "rstrt": "restart", "restrt": "restart",
    "stop": "stop", "terminate": "stop", "kill": "stop", "halt": "stop", "shutdown": "stop", "end": "stop",
    "start": "start", "launch": "start", "boot": "start",
    "status": "status", "check": "status", "health": "status", "healthcheck": "status", "state": "status",
    "logs": "logs", "log": "logs", "tail": "logs", "output": "logs",
    "show": "show", "list": "show", "display": "show", "get": "show", "give": "show", "print": "show",
    "tell": "show", "view": "show", "see": "show", "find": "show", "fetch": "show", "report": "show",
    "describe": "describe", "ensure": "ensure", "pull": "show", "compare": "show", "summarise": "show", "summarize": "show",
}
VERB_PHRASES: dict[tuple[str, ...], str] = {
    ("shut", "down"): "stop", ("shut", "off"): "stop", ("take", "down"): "stop", ("bring", "down"): "stop",
    ("turn", "off"): "stop", ("switch", "off"): "stop", ("bring", "up"): "start", ("spin", "up"): "start",
    ("fire", "up"): "start", ("boot", "up"): "start", ("turn", "on"): "start", ("switch", "on"): "start",
    ("start", "up"): "start", ("kick", "off"): "start", ("power", "cycle"): "restart", ("check", "on"): "status",
    ("health", "of"): "status", ("status", "of"): "status", ("state", "of"): "status",
    ("health", "check"): "status", ("look", "at"): "show", ("show", "me"): "show", ("give", "me"): "show",
    ("tell", "me"): "show", ("let", "me", "see"): "show", ("list", "out"): "show", ("pull", "up"): "show", ("tail", "of"): "logs",
    # "make sure the logger is running on nb": start it where it is not running (ensure, _parse)
    ("make", "sure"): "ensure", ("make", "certain"): "ensure",
}
MUTATING = {"restart", "start", "stop"}
# Phrasal verbs whose object may stand between verb and particle: "bring the worker back up",
# "turn the logger off".  The adjacent form ("bring back up the worker") is a VERB_PHRASE too.
SEPARABLE: dict[tuple[str, ...], str] = {
    ("bring", "up"): "start", ("bring", "back"): "start", ("bring", "back", "up"): "start",
    ("bring", "back", "online"): "start", ("bring", "online"): "start", ("spin", "up"): "start",
    ("spin", "back", "up"): "start", ("fire", "up"): "start", ("fire", "back", "up"): "start",
    ("start", "up"): "start", ("start", "back", "up"): "start", ("boot", "up"): "start",
    ("turn", "on"): "start", ("turn", "back", "on"): "start", ("switch", "on"): "start",
    ("switch", "back", "on"): "start", ("kick", "off"): "start",
    ("take", "down"): "stop", ("take", "offline"): "stop", ("bring", "down"): "stop", ("shut", "down"): "stop",
    ("shut", "off"): "stop", ("turn", "off"): "stop", ("switch", "off"): "stop", ("spin", "down"): "stop",
    ("power", "cycle"): "restart",
}
VERB_PHRASES.update(SEPARABLE)
# "I need the worker restarted", "have the logger on nb stopped": the action as a participle
PARTICIPLES: dict[tuple[str, ...], str] = {
    **{(w,): "restart" for w in ("restarted", "rebooted", "bounced", "recycled", "reloaded", "cycled",
                                "respawned", "relaunched", "kicked")},
    **{(w,): "stop" for w in ("stopped", "killed", "terminated", "halted", "ended")},
    **{(w,): "start" for w in ("started", "launched", "booted")},
    ("power", "cycled"): "restart", ("shut", "down"): "stop", ("shut", "off"): "stop", ("taken", "down"): "stop",
    ("turned", "off"): "stop", ("switched", "off"): "stop", ("brought", "down"): "stop",
    ("brought", "up"): "start", ("brought", "back", "up"): "start", ("brought", "back"): "start",
    ("spun", "up"): "start", ("fired", "up"): "start", ("turned", "on"): "start", ("switched", "on"): "start",
    ("started", "up"): "start", ("started", "again"): "start",
}
# "the logger on nb needs restarting / a restart / to be restarted"
GERUNDS = {**{w: "restart" for w in ("restarting", "rebooting", "bouncing", "recycling", "cycling",
                                     "relaunching", "respawning")},
           **{w: "stop" for w in ("stopping", "killing", "terminating", "halting")},
           **{w: "start" for w in ("starting", "launching")}}
# the request's wish, before a participle: "I need", "we want", "please have", "get"
INTENTS: set[tuple[str, ...]] = {
    ("i", "need"), ("i", "want"), ("i", "would", "like"), ("we", "need"), ("we", "want"), ("we", "would", "like"),
    ("i", "would", "love"), ("need",), ("want",), ("have",), ("get",), ("i", "would", "want"),
    ("i", "would", "rather"), ("we", "would", "rather"), ("i", "would", "prefer"),
}
NEEDS = {"needs", "need", "should", "must"}
MODALS = {"could", "can", "would", "will"}
# "please do restart", "go restart", "try restarting", "need restart": a light word before the action
LIGHT = {"do", "make", "go", "try", "need", "needs"}
QUESTION_WORDS = {"how", "what", "which", "where", "is", "are", "does", "do", "who", "whats"}

# metric words → metric key
METRICS: dict[tuple[str, ...], str] = {
    ("temperature",): "temperature_c", ("temp",): "temperature_c", ("temps",): "temperature_c",
    ("temperatures",): "temperature_c", ("heat",): "temperature_c",
    ("cpu",): "cpu_percent", ("cpu", "usage"): "cpu_percent", ("cpu", "load"): "cpu_percent",
    ("processor",): "cpu_percent", ("load",): "load_1m", ("load", "average"): "load_1m", ("loadavg",): "load_1m",
    ("memory",): "memory_percent", ("ram",): "memory_percent", ("mem",): "memory_percent",
    ("memory", "usage"): "memory_percent", ("ram", "usage"): "memory_percent", ("memory", "use"): "memory_percent",
    ("free", "memory"): "free_memory_percent", ("free", "ram"): "free_memory_percent",
    ("available", "memory"): "free_memory_percent", ("memory", "free"): "free_memory_percent",
    ("disk",): "disk_percent", ("disk", "usage"): "disk_percent", ("disk", "space"): "disk_percent",
    ("storage",): "disk_percent", ("disks",): "disk_percent", ("cpus",): "cpu_percent", ("loads",): "load_1m",
}
#: Words after a metric that add nothing to it: "mem usage", "cpu utilization", "temperature readings".
METRIC_SUFFIX = {"usage", "utilization", "utilisation", "use", "level", "levels", "reading", "readings", "value",
                 "values", "figure", "figures", "numbers", "wise", "stats", "percentage", "avg", "average"}
# adjective → metric (for "how hot is", "is X busy")
METRIC_ADJ = {"hot": "temperature_c", "warm": "temperature_c", "cold": "temperature_c", "cool": "temperature_c",
              "chilly": "temperature_c", "busy": "load_1m", "loaded": "load_1m", "idle": "load_1m",
              "full": "disk_percent"}

_UP, _DOWN = "desc", "asc"
SUPERLATIVES: dict[tuple[str, ...], tuple[str, str]] = {}


def _sup(words: list[str], key: str, order: str) -> None:
    for w in words:
        t = tuple(w.split())
        SUPERLATIVES[t] = (key, order)
        if t[0] != "with":
            SUPERLATIVES[("with",) + t] = (key, order)


_sup(["hottest", "warmest", "hotest", "highest temperature", "highest temp", "most hot", "hottest running",
      "maximum temperature", "max temperature", "highest temps"], "temperature_c", _UP)
_sup(["coolest", "coldest", "chilliest", "lowest temperature", "lowest temp", "least hot", "minimum temperature",
      "min temperature", "lowest temps"], "temperature_c", _DOWN)
_sup(["busiest cpu", "busiest processor"], "cpu_percent", _UP)
_sup(["most heavily loaded", "under most load"], "load_1m", _UP)
_sup(["least heavily loaded", "under least load"], "load_1m", _DOWN)
_sup(["most loaded", "busiest", "highest load", "most load", "heaviest load", "most busy", "highest load average",
      "highest load avg"], "load_1m", _UP)
_sup(["least loaded", "least busy", "idlest", "quietest", "lowest load", "least load", "lightest load",
      "lowest load average",
      "most idle", "laziest"], "load_1m", _DOWN)
_sup(["highest cpu", "most cpu", "highest cpu usage", "most cpu usage", "highest cpu load"], "cpu_percent", _UP)
_sup(["lowest cpu", "least cpu", "lowest cpu usage", "least cpu usage", "lowest cpu load", "least utilised",
      "least utilized", "lowest utilisation", "lowest utilization"], "cpu_percent", _DOWN)
_sup(["most utilised", "most utilized", "highest utilisation", "highest utilization"], "cpu_percent", _UP)
_sup(["most free memory", "most memory free", "most available memory", "most free ram", "most ram free",
      "lowest memory usage", "lowest memory", "least memory used", "least memory", "most spare memory",
      "least ram", "lowest ram usage", "most memory available", "maximum free memory"],
     "free_memory_percent", _UP)
_sup(["least free memory", "least memory free", "least available memory", "least free ram", "highest memory usage",
      "highest memory", "most memory used", "most memory", "most ram", "highest ram usage", "fullest memory"],
     "free_memory_percent", _DOWN)
_sup(["emptiest disk", "most free disk", "most free disk space", "most disk space", "most disk", "lowest disk usage",
      "lowest disk", "least disk used", "least full disk", "most disk free", "least disk usage"], "disk_percent", _DOWN)
_sup(["fullest disk", "least free disk", "least free disk space", "least disk space", "least disk", "highest disk usage",
      "highest disk", "most disk used", "most disk usage", "fullest"], "disk_percent", _UP)

# "the hotter of na and nc", "whichever of na and nb is cooler": a comparative picks one of the named
COMPARATIVES = {"hotter": ("temperature_c", "desc"), "warmer": ("temperature_c", "desc"),
                "cooler": ("temperature_c", "asc"), "colder": ("temperature_c", "asc"),
                "busier": ("load_1m", "desc")}
# "the node whose cpu is highest": a metric, then one of these
SUP_ADJ_UP = {"highest", "greatest", "biggest", "largest", "maximum", "max", "most", "top", "heaviest"}
SUP_ADJ_DOWN = {"lowest", "smallest", "least", "minimum", "min", "lightest"}


# comparison words → (op, metric hint or None)
COMPARISONS: dict[tuple[str, ...], tuple[str, str | None]] = {
    ("under",): ("lt", None), ("below",): ("lt", None), ("less", "than"): ("lt", None),
    ("lower", "than"): ("lt", None), ("fewer", "than"): ("lt", None), ("<",): ("lt", None),
    ("over",): ("gt", None), ("above",): ("gt", None), ("more", "than"): ("gt", None),
    ("greater", "than"): ("gt", None), ("higher", "than"): ("gt", None), ("exceeding",): ("gt", None),
    ("exceeds",): ("gt", None), ("exceed",): ("gt", None), ("is", "over"): ("gt", None),
    (">",): ("gt", None), ("at", "least"): ("ge", None), ("no", "less", "than"): ("ge", None), (">=",): ("ge", None),
    ("at", "most"): ("le", None), ("no", "more", "than"): ("le", None), ("<=",): ("le", None),
    ("up", "to"): ("le", None), ("not", "more", "than"): ("le", None), ("not", "over",): ("le", None),
    ("not", "above",): ("le", None), ("not", "below",): ("ge", None), ("not", "under",): ("ge", None),
    ("warmer", "than"): ("gt", "temperature_c"), ("hotter", "than"): ("gt", "temperature_c"),
    ("cooler", "than"): ("lt", "temperature_c"), ("colder", "than"): ("lt", "temperature_c"),
    ("busier", "than"): ("gt", "load_1m"), ("less", "busy", "than"): ("lt", "load_1m"),
    ("between",): ("between", None), ("exactly",): ("eq", None), ("equal", "to"): ("eq", None),
    ("at", "or", "above"): ("ge", None), ("at", "or", "over"): ("ge", None), ("at", "or", "below"): ("le", None),
    ("at", "or", "under"): ("le", None),
}
# "50 degrees or more": the comparison after the number
OR_MORE = {("or", "more"): "ge", ("or", "higher"): "ge", ("or", "above"): "ge", ("or", "over"): "ge",
           ("or", "less"): "le", ("or", "lower"): "le", ("or", "below"): "le", ("or", "under"): "le",
           ("and", "above"): "ge", ("and", "up"): "ge", ("and", "over"): "ge", ("and", "below"): "le",
           ("and", "under"): "le", ("or", "warmer"): "ge", ("or", "hotter"): "ge", ("or", "cooler"): "le",
           ("or", "colder"): "le"}
UNITS = {"degrees": "temperature_c", "degree": "temperature_c", "deg": "temperature_c", "°c": "temperature_c",
         "°": "temperature_c", "celsius": "temperature_c", "c": "temperature_c", "%": "percent",
         "percent": "percent", "pct": "percent"}

ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7,
            "8th": 8, "9th": 9, "10th": 10, "next": 2}
COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10, "top": 0, "couple": -1, "few": -1, "some": -1, "several": -1}

NODE_NOUNS = {"node", "nodes", "host", "hosts", "server", "servers", "machine", "machines", "box", "boxes", "pi", "pis",
              "vm", "vms",
              "instance", "instances", "device", "devices", "member", "members", "peer", "peers"}
PROC_NOUNS = {"process", "processes", "proc", "procs", "daemon", "daemons", "program", "programs",
              "service", "services", "job", "jobs", "app", "apps"}
_PLURAL_PROC = {"processes", "procs", "daemons", "programs", "services", "jobs", "apps"}
PREPS = {"on", "at", "in", "across", "from", "for", "of", "to", "onto", "within", "over"}

# words and phrases with no meaning for the plan (politeness, articles, filler)
FILLER_PHRASES: set[tuple[str, ...]] = {
    ("could", "you"), ("can", "you"), ("would", "you"), ("will", "you"), ("could", "u"), ("can", "u"),
    ("i", "need", "you", "to"), ("i", "want", "you", "to"), ("i", "would", "like", "you", "to"),
    ("i", "would", "like", "to"), ("i", "want", "to"), ("i", "need", "to"), ("i", "d", "like", "to"),
    ("go", "ahead", "and"), ("let", "us"), ("thank", "you"), ("if", "you", "can"), ("if", "possible"),
    ("right", "now"), ("real", "quick"), ("for", "me"), ("be", "so", "kind", "as", "to"),
    ("would", "you", "mind"), ("do", "me", "a", "favor", "and"), ("when", "you", "get", "a", "chance"),
    ("as", "well"), ("right", "away"),
    # greetings and thanks around a request ("a" is gone by now when it is an article)
    ("good", "morning"), ("good", "afternoon"), ("good", "evening"), ("good", "day"),
    ("when", "you", "have", "moment"), ("when", "you", "have", "a", "moment"), ("when", "you", "can"),
    ("many", "thanks"), ("thanks", "lot"), ("thanks", "a", "lot"), ("much", "appreciated"),
    ("thank", "you", "very", "much"), ("thanks", "in", "advance"), ("if", "you", "would"),
    ("if", "you", "could"), ("at", "your", "convenience"),
    ("if", "that", "is", "ok"), ("if", "that", "is", "okay"), ("if", "it", "is", "ok"), ("if", "it", "is", "okay"),
    ("it", "would", "be", "great", "if", "you", "could"), ("it", "would", "be", "nice", "if", "you", "could"),
    ("it", "would", "be", "great", "if", "you", "can"), ("i", "would", "appreciate", "it", "if", "you", "could"),
    ("at", "the", "moment"), ("at", "moment"), ("as", "of", "now"), ("for", "now"), ("right", "away"),
    ("if", "that", "is", "ok", "with", "you"), ("if", "that", "is", "okay", "with", "you"),
    ("if", "that", "is", "alright"), ("if", "that", "is", "fine"), ("if", "that", "works"),
    ("could", "i", "take", "a", "look", "at"), ("could", "i", "take", "look", "at"), ("can", "i", "take", "a", "look", "at"),
    ("can", "i", "take", "look", "at"), ("let", "me", "take", "a", "look", "at"),
    ("if", "you", "please"), ("if", "you", "do", "not", "mind"), ("hi", "there"), ("hello", "there"),
    ("be", "so", "kind", "to"), ("be", "so", "kind", "and"), ("would", "you", "be", "so", "kind", "as", "to"),
    ("would", "you", "be", "so", "kind", "to"), ("may", "i", "ask"), ("can", "i", "ask"), ("could", "i", "ask"),
    ("i", "would", "like", "to", "know"), ("i", "want", "to", "know"), ("i", "wonder"), ("i", "am", "wondering"),
    ("i", "was", "wondering"), ("do", "you", "know"), ("any", "idea"), ("make", "sure", "to"), ("be", "sure", "to"),
    ("be", "so", "good", "as", "to"), ("would", "you", "be", "so", "good", "as", "to"), ("be", "so", "good", "to"),
    ("can", "i", "see"), ("could", "i", "see"), ("let", "me", "know"), ("can", "you", "check"),
    ("we", "need", "to"), ("we", "want", "to"), ("we", "have", "to"), ("i", "have", "to"), ("we", "should"),
    ("look", "like"), ("looks", "like"), ("looking", "like"), ("just", "curious"), ("just", "wondering"),
    ("quick", "question"), ("quick", "check"), ("quick", "one"), ("hey", "there"), ("thanks", "mate"),
    ("appreciate", "it"), ("much", "appreciated"), ("for", "now"), ("while", "you", "are", "at", "it"), ("sorry", "to", "bother", "you"),
    ("sorry", "for", "bothering", "you"), ("sorry", "for", "trouble"), ("sorry", "for", "the", "trouble"),
    ("i", "think", "we", "should"), ("i", "think", "you", "should"), ("in", "total"), ("all", "in", "all"),
    ("can", "we"), ("could", "we"), ("shall", "we"), ("should", "we"), ("for", "them"), ("for", "us"), ("can", "somebody"), ("can", "someone"), ("could", "somebody"), ("could", "someone"), ("will", "someone"),
    ("someone", "please"), ("somebody", "please"), ("can", "anyone"), ("could", "anyone"),
}
FILLERS = {"please", "pls", "plz", "kindly", "just", "quickly", "now", "thanks", "thx", "cheers", "hey", "hi",
           "ok", "okay", "so", "the", "an", "me", "asap", "again", "currently", "immediately", "hello", "yo",
           "sir", "folks", "team", "guys", "quick", "promptly", "too", "rn", "atm", "lately", "recently", "sorry", "um", "uh", "erm", "hmm", "current", "lol", "mate", "ty",
           "tysm", "haha", "ugh", "hiya", "heya", "oh", "ah", "well", "buddy", "pal", "today", "bro"}
ARTICLES = {"the", "a", "an"}

# structural words the parser consumes (kept in the fuzzy vocabulary too)
STRUCTURAL = {
    "all", "every", "each", "everywhere", "everything", "anywhere", "any", "whole", "entire", "cluster",
    "except", "but", "not", "no", "other", "than", "excluding", "exclude", "apart", "besides", "without",
    "minus", "save", "others", "rest", "remaining", "else", "and", "or", "plus", "then", "after", "that",
    "afterwards", "which", "who", "where", "is", "are", "has", "have", "having", "runs", "run", "running",
    "hosting", "hosts", "supervise", "supervises", "supervising", "with", "it", "them", "those", "these",
    "there", "same", "its", "their", "one", "ones", "lines", "line", "last", "how", "what", "does", "do",
    "much", "many", "because", "up", "down", "online", "offline", "doing", "alive", "ok", "fine", "healthy",
    "whichever", "stopped", "both", "also", "next", "never", "don", "dont", "metrics", "stats",
    "statistics", "info", "supervised", "hosted", "by", "top", "between", "whose", "single",
    "only", "first", "firstly", "finally", "lastly", "more", "higher", "less", "lower", "fleet", "wherever",
    "details", "detail", "information", "about", "we", "called", "named", "using", "showing", "reading",
    "leave", "alone", "restarts", "uses", "had", "followed", "skip", "skipping", "omitting", "among", "whatever",
    "heavily", "times", "often", "did", "looking", "this", "our", "done", "finished", "reachable", "trouble",
    "problems", "problem", "issues", "issue", "wrong", "summary", "overview", "were", "ought",
    "printing", "writing", "logging", "outputting", "saying", "printed", "written", "logged", "anything", "good",
    "actually", "really", "recent", "latest", "bottom", "stuff", "things", "got", "another", "sorted", "ordered",
    "ranked", "ascending", "overall", "somewhere",
}


def _phrase_vocab() -> set[str]:
    words: set[str] = set()
    for table in (VERB_PHRASES, METRICS, SUPERLATIVES, COMPARISONS, FILLER_PHRASES):
        for t in table:
            words.update(t)
    return words


#: Words that describe a process in trouble ("the logger on nc keeps crashing, restart it").
_SYMPTOMS = {"crashing", "crashed", "crashes", "crash", "stuck", "hung", "hanging", "hangs", "frozen", "froze", "die",
             "freezing", "down", "dead", "died", "dying", "broken", "misbehaving", "acting", "flapping", "failing",
             "failed", "fails", "unresponsive", "responding", "wedged", "leaking", "looping", "erroring"}
_SYMPTOM_GLUE = {"is", "keeps", "kept", "seems", "looks", "appears", "has", "was", "been", "to", "be", "again", "needs",
                 "not", "up", "memory", "errors", "throwing", "the", "and", "just", "still", "totally", "completely"}
#: A remark after (or between) the requests of a message, about what is named there: "start logger on nb,
#: it seems to have stopped", "restart worker on nc. It keeps crashing".  It names nothing (no node, process,
#: action or exclusion), so dropping it changes no plan; anything else in it keeps it, and is parsed.
_REMARK_HEADS = {"it", "its", "they", "this", "that", "seems", "looks", "apparently", "i"}
_REMARK_STATES = _SYMPTOMS | {"stopped", "running", "working", "responding", "weird", "slow", "sluggish", "off",
                              "exited", "gone", "wrong", "odd", "strange", "again", "anymore"}
_REMARK_WORDS = _REMARK_HEADS | _REMARK_STATES | _SYMPTOM_GLUE | {
    "seem", "have", "had", "are", "were", "think", "guess", "believe", "probably", "maybe", "apparently", "like",
    "bit", "a", "something", "somehow", "lately", "today", "since", "earlier", "this", "morning"}
_RANGE_WORDS = {"through", "thru", "to", "till", "until"}
_NUMBERED = re.compile(r"(.*?[a-z].*?)(\d+)")
_REPHRASED = _SYMPTOMS | _SYMPTOM_GLUE | _RANGE_WORDS | _REMARK_WORDS | {"give", "kick", "nudge", "going", "whether",
                                                                         "verify", "confirm"}

BASE_VOCAB = (set(VERBS) | METRIC_SUFFIX | {"terms"} | _phrase_vocab() | set(METRIC_ADJ) | set(UNITS) | set(ORDINALS) | set(COUNTS)
              | NODE_NOUNS | PROC_NOUNS | PREPS | FILLERS | STRUCTURAL | QUESTION_WORDS | set(GERUNDS) | NEEDS
              | {w for t in (*PARTICIPLES, *INTENTS) for w in t} | {"be", "back"} | SUP_ADJ_UP | SUP_ADJ_DOWN | _REPHRASED)


# ---- normalisation --------------------------------------------------------------------------

_CONTRACTIONS = [
    (r"\bwhat's\b", "what is"), (r"\bwhats\b", "what is"), (r"\bwhere's\b", "where is"), (r"\bhow's\b", "how is"),
    (r"\bwho's\b", "who is"), (r"\bthat's\b", "that is"), (r"\bit's\b", "it is"), (r"\bthere's\b", "there is"),
    (r"\bdon't\b", "do not"), (r"\bdont\b", "do not"), (r"\bdoesn't\b", "does not"), (r"\bisn't\b", "is not"),
    (r"\baren't\b", "are not"), (r"\bcan't\b", "can not"), (r"\bcannot\b", "can not"), (r"\bwon't\b", "will not"),
    (r"\bshouldn't\b", "should not"), (r"\bdidn't\b", "did not"), (r"\blet's\b", "let us"), (r"\blets\b", "let us"),
    (r"\bi'd\b", "i would"), (r"\bi'm\b", "i am"), (r"\bwhich's\b", "which is"),
    (r"\b(we|they|you)'re\b", r"\1 are"), (r"\b(we|they|you|i)'ve\b", r"\1 have"),
    (r"\b(we|they|you|i|it|that)'ll\b", r"\1 will"), (r"\b(we|they|you|he|she|it|that)'d\b", r"\1 would"),
    (r"\b(was|were|has|have|had|would|could|should|does|do|did)n't\b", r"\1 not"),
]
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:st|nd|rd|th)?|[a-z0-9](?:[a-z0-9_.\-]*[a-z0-9])?|°c?|>=|<=|[,;&<>%]|\n|\S")


#: Node ids joined by 'and', ',' or '&' ("na and nb", "n-1, n-2 & n-3"), in a rewrite.
_ID_LIST = r"[a-z0-9][\w.\-]*(?:(?:\s*,\s*|\s+and\s+|\s*&\s*)[a-z0-9][\w.\-]*)*"
#: An action word in a rewrite (any form: "restart", "restarted", "stopping"), for rules that need the
#: sentence to have its action.
_ACTION = "(?:" + "|".join(sorted({re.escape(v) for v in (*VERBS, *(p[0] for p in VERB_PHRASES))}, key=len,
                                   reverse=True)) + r")(?:p?ed|p?ing|s|d)?"
#: normalise(): each rewrite in turn, compiled once.
_REWRITE_RULES: list[tuple[str, Any]] = [
    # a label before the request: "Task: restart ...", "Q: which node ...", "Ticket - stop ..."
    (r"^\s*(?:task|q|question|request|req|ticket|todo|to-do|action|ask|fyi|issue|job|ops)\s*[:\-]\s*", ""),
    *_CONTRACTIONS,
    (r"([a-z0-9])'s\b", r"\1"),  # possessive: nc's -> nc
    (r"(\d)\s*°\s*c\b", r"\1 °c"),  # 45°C, 45 ° C
    (r"(\d)°", r"\1 °"),
    (r"(\d)\s*%", r"\1 %"),
    (r"(\d)(degrees?|deg|c)\b", r"\1 \2"),  # 45c, 40degrees
    (r"[\"`]|(?<![a-z0-9])'|'(?![a-z0-9])", " "),  # quotes around words (brackets stay: refused)
    (r":(?!\d)", " "),  # "on: nb"
    (r"\s*\.{2,}\s*$", ""),  # a trailing "..." (inside, ".." stays: edge-1..edge-3 is refused)
    # Exclusions as operators write them, inside the sentence of the action (one in a sentence of its own, or
    # in brackets, is still refused): each becomes 'except', and what follows is parsed as strictly as ever.
    (r"\bwith the exception of\b", "except"),                                    # "... with the exception of nb"
    (r"\b(?:but |and )?(?:leaving|leave) out\b", "except"),                      # "..., leaving out nb"
    (r"\b(?:but |and )?(?:leaving|leave) ([^,;.!?()]+?) out\b", r"except \1"),  # "..., but leave nb out"
    (r"\b(?:but |and )?(?:leaving|leave) ([^,;.!?()]+?) (?:running|untouched|as is|as it is|be)\b",
     r"except \1"),                                                                # "but leave nb running"
    (r"(?<=\S )(?:but |and )?(?:ignoring|sparing|excepting)\b", "except"),  # "everywhere, ignoring nb"
    (r"(?<=\S )(?:but |and )?never (?:on|at|in|for)\b", "except"),          # "..., but never on nb"
    # "..., but do not touch nb", "..., but do not restart it on nb": a negation after the action's clause
    (r"(?<=\S )(?:but |and )?(?:please )?(?:do not|never) touch\b", "except"),
    (r"(?<=\S )(?:but |and )?(?:please )?(?:do not|never) (?:restart|stop|start|bounce|recycle|kill|touch|do)"
     r"(?: it| them| that| this| so| the same| (?:the )?[a-z][\w\-]*)? (?:on|at|in|for)\b", "except"),
    # "..., nb excluded", "... everywhere nb excepted", "..., nb and nc spared", "..., nb must not be restarted",
    # "..., nb stays untouched": what is named before the word is left out, only in a sentence that has its
    # action (an exclusion in a sentence of its own is refused, and a list cut in two would leave a node in).
    # After a comma, all of it from the first comma after the action ("..., na, nb excluded": both); with no
    # comma, only ids joined by 'and' or '&' right after the target ("everywhere nb and nc excepted").
    *(rule for tail in (r"(?:is |are )?(?:excluded|excepted|exempted|spared|exempt|left out)",
                        r"(?:must|should|shall|may|can|will|is to|are to) not be (?:restarted|stopped|started|"
                        r"touched|affected|included|bounced|recycled|killed)",
                        r"(?:stays|stay|remains|remain) (?:untouched|alone|as is|out of it|as it is)")
      for rule in ((rf"((?:^|[;.!?])[^;.!?()]*?\b{_ACTION}\b[^;.!?(),]*),\s*([^;.!?()]+?)\s+{tail}\b",
                    r"\1, except \2"),
                   (rf"((?:^|[;.!?])[^;.!?()]*?\b{_ACTION}\b[^;.!?(),]*?\b(?:everywhere|nodes|hosts|servers|"
                    rf"machines|boxes|cluster|fleet)) ({_ID_LIST})\s+{tail}\b", r"\1 except \2"))),
    (r"\b(teh|hte)\b", "the"),
    (r"\badn\b", "and"),
    (r"\s\+\s", " and "),
    (r"&&", " then "),                                     # "restart logger on nb && stop worker on nc"
    (r"\s[-\u2013\u2014]+\s", " , "),  # "logger on nb - restart": a dash between words
    (r"\s@\s", " at "),
    (r"\s*(?:->|=>|\u2192)\s*", " then "),  # "stop logger nc -> start logger nc"
    (r"\b(first|second|third|fourth|fifth|\d+(?:st|nd|rd|th)|least|most)-(?=[a-z])", r"\1 "),
    (r"^\s*(?:(?:runbook|incident)\s+)?(?:step|item)\s+\d+\s*[:.)\-]?\s+", ""),  # "Runbook step 4:"
    (r"^\s*\d+[.)]\s+", ""),  # "1. restart ..." (a numbered line)
    (r"\bor not\s*(?=[?;.!]|$)", ""),  # "is the worker up or not": the question itself
    (r"\bought to\b", "should"),
    (r"\b(him|her)\b", "it"),  # "please start him": the process (non-native English)
    (r"\bw/\s*", "with "),  # "w/ the highest cpu"
    (r"\bits(?= (?:actually |really |not |still )?(?:running|stopped|down|up|dead|crashed|ok)\b)", "it is"),
    (r"\bgimme\b", "give me"),
    (r"\bwanna\b", "want to"),
    (r"\bwat\b", "what"),
    (r"\b(?:one|1)[- ]?min(?:ute)? load(?: average| avg)?\b", "load"),
    (r"\bpegging (?:the )?cpu\b", "using the most cpu"),
    (r"\bnot (?:online|reachable|up)\b", "offline"),
    (r"\b(is|are|was) (stop|crash|hang)\b", lambda m: f"{m.group(1)} {m.group(2)}ped"
     if m.group(2) == "stop" else f"{m.group(1)} {m.group(2)}ed"),  # "the worker is stop since morning"
    (r"\b(eats|consumes|burns|hogs|chews)\b", "uses"),  # "the node that eats the most cpu"
    (r"\b(eating|consuming|burning|hogging|chewing)\b", "using"),
    (r"\b(?:under|in) supervision\b", ""),  # "what is running under supervision on nc"
    (r"\b(?:i |we )?need (?:the |a )?tail of\b", "tail of"),  # "need the tail of the logger logs"
    (r"\bin (?:the|a) (running|stopped) state\b", r"\1"),  # "where it is in the running state"
    (r"\b(memory|ram|disk|cpu) in use\b", r"\1 used"),  # "the least memory in use"
    (r"\bcarry\b", "have"),
    (r"\bsitting\b", "running"),  # "how many nodes are sitting above 60 degrees"
    # "rank the nodes by cpu usage, highest first" / "sort hosts by temperature": the ranking itself
    (r"^\s*(?:rank|sort|order|list|show)\s+(?:me\s+)?(?:the\s+|all\s+(?:the\s+)?)?(nodes|hosts|servers|machines|boxes)"
     r"\s+by\s+",
     r"show all \1 sorted by "),
    (r"(sorted by [a-z ]+?)\s*,?\s*(?:highest|most|biggest|largest|hottest) first\b", r"\1"),
    (r"(sorted by [a-z ]+?)\s*,?\s*(?:lowest|least|smallest|coolest) first\b", r"\1 ascending"),
    # who asked, before what they asked: "Customer says the logger on nb keeps dying, ...", "The customer wants to
    # know how full the disk on edge-5 is", "Customer asked us to shut down ..."
    (r"^\s*(?:the |a |our |my |one )?(?:customer|client|user|users|team|boss|manager|lead|someone|somebody)"
     r"(?: on \S+)? (?:says|said|reports|reported|mentioned|noticed|thinks|writes|wrote|is reporting)"
     r"(?: that)?\s+", ""),
    (r"^\s*(?:the |a |our |my )?(?:customer|client|user|users|boss|manager|lead) (?:asked|asks|wants|wanted|"
     r"would like|is asking|needs)(?: us| me)?(?: to know| to see| to| for)?\s+", ""),
    (r"\bmost (high|low)\b", lambda m: m.group(1) + "est"),  # "most high cpu": the highest
    (r"\b(?:closest|nearest) to (?:full|capacity)\b", "fullest"),
    (r"\b(?:is )?(?:closest|nearest) to running out of (?:disk|disk space|space|storage)\b", "has the fullest disk"),
    (r"\b(?:is )?(?:closest|nearest) to running out of (?:memory|ram)\b", "has the least free memory"),
    (r"\b(?:a|one) quarter of\b", "25 % of"),
    (r"\bthree quarters of\b", "75 % of"),
    (r"\bhalf (?:of )?(?=its|their|the)", "50 % of "),
    (r"\b(?:once|when|after)\s+(?:that|this|it)\s+is\s+(?:done|finished|complete|completed|back up|up)\b"
     r"\s*,?", " then "),  # "once that's done, start ...": the next step
    (r"\.(\s|$)", r" ; \1"),  # a sentence end is a step boundary
    (r"[!?]+(?=\s*(?:on|at|in|for|across|from|except|but)\b)", " "),  # "RESTART logger!!! on n-05"
    (r"[!?]+", " ; "),  # so is a question mark or an exclamation mark
]
_REWRITES = [(re.compile(pattern), rep) for pattern, rep in _REWRITE_RULES]


def normalise(text: str) -> list[str]:
    """Lower case, unify quotes and units, expand contractions; the word and symbol tokens."""
    s = text.replace("\u2019", "'").replace("\u2018", "'").replace("º", "°").replace("\r", "\n").lower()
    for pat, rep in _REWRITES:
        s = pat.sub(rep, s)
    return [t for t in _TOKEN.findall(s) if t.strip() or t == "\n"]


# ---- lexicon --------------------------------------------------------------------------------

@dataclass
class Lexicon:
    nodes: dict[str, str]                    # lower-case id -> id
    processes: dict[str, str]                # lower-case name -> name
    services: dict[str, str]
    methods: set[str]
    ambiguous_ids: set[str] = field(default_factory=set)
    vocab: list[str] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)   # id prefixes shared by 2+ nodes ("edge" of edge-1, edge-2)
    self_id: str = ""                                # the node the planner asks through ("this node")

    @classmethod
    def from_view(cls, view: ClusterView) -> Lexicon:
        nodes: dict[str, str] = {}
        ambiguous: set[str] = set()
        procs: dict[str, str] = {}
        services: dict[str, str] = {s: s for s in BUILTIN_METHODS}
        methods: set[str] = set()
        for n in view.nodes:
            k = n.id.lower()
            if k in nodes and nodes[k] != n.id:
                ambiguous.add(k)
            nodes[k] = n.id
            for p in n.processes:
                procs[p.name.lower()] = p.name
            for name, svc in n.services.items():
                if name not in services:   # the method names of each service, from the first node offering it
                    services[name] = name
                    methods.update(svc.methods)
        services = {k.lower(): v for k, v in services.items()}
        heads: dict[str, int] = {}
        for k in nodes:
            head = re.split(r"[-_.]", k, maxsplit=1)[0]
            if head != k and head.isalpha():
                heads[head] = heads.get(head, 0) + 1
        groups = {h for h, n in heads.items() if n >= 2 and h not in nodes and h not in procs
                  and h not in BASE_VOCAB}
        vocab = sorted(BASE_VOCAB | set(procs) | set(services))
        return cls(nodes=nodes, processes=procs, services=services, methods=methods, ambiguous_ids=ambiguous,
                   vocab=vocab, groups=groups, self_id=view.self_id.lower() if view.self_id.lower() in nodes else "")

    def known(self, word: str) -> bool:
        return word in BASE_VOCAB or word in self.nodes or word in self.processes or word in self.services \
            or word in self.groups

    def correct(self, word: str) -> tuple[str | None, list[str]]:
        """The one word ``word`` is a typo of (or None), and the close candidates."""
        if len(word) < 4 or not re.fullmatch(r"[a-z][a-z\-]*", word):
            return None, []
        limit = 1 if len(word) < 8 else 2
        found = extract(word, self.vocab, scorer=OSA.distance, score_cutoff=limit, limit=5)
        if not found:
            return None, []
        # a typo drops, adds or swaps a letter more often than it changes one: ties go to the smaller Indel
        def kind(w: str) -> int:  # 0: a swap, a missing or an extra letter; 1: a changed letter
            return 0 if sorted(w) == sorted(word) or len(w) != len(word) else 1

        scored = sorted((d, kind(w), Indel.distance(word, w), w) for w, d, _ in found)
        best = scored[0][:3]
        top = [x[3] for x in scored if x[:3] == best]
        cands = [w for w, _, _ in found]
        if len(top) != 1:
            return None, cands
        cand = top[0]
        if len(word) <= 5 and not (sorted(cand) == sorted(word) or abs(len(cand) - len(word)) == 1):
            return None, cands  # short words: a swap, a missing or an extra letter; never a changed letter
        if cand[0] != word[0] and sorted(cand) != sorted(word):
            return None, cands
        return cand, cands


@dataclass
class Lexeme:
    """One unit of the request: a word or a phrase, with what the lexicon says it is."""

    kind: str          # verb, metric, sup, cmp, unit, ord, count, num, node, proc, service, nnoun, pnoun,
                       # prep, filler, punct, word, unknown
    value: Any
    words: tuple[str, ...]
    pos: int
    used: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _match(tokens: list[str], i: int, table: dict[tuple[str, ...], Any] | set[tuple[str, ...]]) -> int:
    """Length of the longest phrase of ``table`` starting at tokens[i] (0: none)."""
    best = 0
    for n in range(min(8, len(tokens) - i), 0, -1):
        if tuple(tokens[i:i + n]) in table:
            return n
    return best


def lex(tokens: list[str], lx: Lexicon) -> tuple[list[Lexeme], list[tuple[str, str]], list[Lexeme]]:
    """Tokens → lexemes; also the typo corrections made and the unknown words."""
    corrections: list[tuple[str, str]] = []
    toks = list(tokens)
    for i, t in enumerate(toks):
        if not lx.known(t) and re.fullmatch(r"[a-z][a-z\-]*", t):
            fixed, _ = lx.correct(t)
            if fixed is not None:
                corrections.append((t, fixed))
                toks[i] = fixed
    toks = _join_ids(toks, lx)
    toks = [t for k, t in enumerate(toks) if not _article(toks, k, lx)]
    toks = rephrase(toks, lx)
    out: list[Lexeme] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        prev = out[-1] if out else None
        if prev is not None and prev.kind == "num" and t in UNITS:
            out.append(Lexeme("unit", UNITS[t], (t,), len(out)))
            i += 1
            continue
        # a node id wins where it stands alone ("a", "7"), except as an article or a count/value
        if t in lx.nodes and t not in lx.ambiguous_ids:
            number_use = re.fullmatch(r"\d+(\.\d+)?", t) and (
                nxt in UNITS or nxt in NODE_NOUNS or nxt == "lines" or tuple(toks[i + 1:i + 3]) in SUPERLATIVES
                or (nxt and _match(toks, i + 1, SUPERLATIVES)) or (prev is not None and prev.kind in ("cmp", "count")))
            article_use = t == "a" and (nxt in NODE_NOUNS or nxt in ("few", "couple", "node", "single", "random")
                                         or nxt in lx.processes or _match(toks, i + 1, SUPERLATIVES) > 0)
            if not number_use and not article_use:
                out.append(Lexeme("node", lx.nodes[t], (t,), len(out)))
                i += 1
                continue
        if t == "over" and nxt in ("on", "at", "in", "there"):   # "stop it over on nc": not a comparison
            out.append(Lexeme("filler", None, (t,), len(out)))
            i += 1
            continue
        for table, kind in ((FILLER_PHRASES, "filler"), (VERB_PHRASES, "verb"), (SUPERLATIVES, "sup"),
                            (COMPARISONS, "cmp"), (METRICS, "metric")):
            n = _match(toks, i, table)
            if n:
                words = tuple(toks[i:i + n])
                value = None if kind == "filler" else table[words]  # type: ignore[index]
                while kind == "metric" and i + n < len(toks) and toks[i + n] in METRIC_SUFFIX \
                        and toks[i + n] not in lx.nodes and toks[i + n] not in lx.processes:
                    n += 1      # "mem usage", "cpu utilization"
                    words = tuple(toks[i:i + n])
                out.append(Lexeme(kind, value, words, len(out)))
                i += n
                break
        else:
            out.append(_word(t, lx, len(out), prev, nxt))
            i += 1
    unknown = [x for x in out if x.kind == "unknown"]
    return out, corrections, unknown


_SEPARABLE_HEADS = {k[0] for k in SEPARABLE}
_OBJECT_WORDS = {"it", "them", "and", ",", "&", "plus", "both", "all", "every", "each", "everything"} | PROC_NOUNS
_BOUNDARY = {";", "\n", "then", ",", "and", "also"}
_STOP_AT = {";", "\n", "then", "not", "no", "never", "dont", "don", "?"}


def rephrase(toks: list[str], lx: Lexicon) -> list[str]:
    """Put the action first where English puts it elsewhere, and change nothing else.

    * "bring the worker back up" → "bring back up worker" (a separable phrasal verb: only process
      names, node ids, pronouns and 'and' may stand between verb and particle; a particle 'on' must
      end the clause or come before a preposition, so "turn the logger on nd" is left alone);
    * "I need / want / get / have the worker [on nb] restarted" → "restart worker [on nb]", and so
      each "and the logger stopped on nc" after it;
    * "the logger [on nb] needs restarting / a restart / to be restarted / should be restarted" →
      "restart logger [on nb]".

    Only word order changes; what comes out is parsed as strictly as any request (a word that fits
    nowhere is still refused), and a negation inside the moved words stops the rewrite.
    """
    out = _ids(toks, lx)
    out = [_SHORTHAND.get(t, t) if t not in lx.nodes and t not in lx.processes else t for t in out]
    out = _remarks(out, lx)
    out = _metric_hints(out)
    out = _this_node(out, lx)
    out = _kick(out, lx)
    out = _symptom(out, lx)
    out = _whether(out)
    out = _light(out)
    out = _separable(out, lx)
    out = _participles(out, lx)
    out = _needs(out, lx)
    return _node_first(out, lx)




def _ids(toks: list[str], lx: Lexicon) -> list[str]:
    """Node ids as operators write them: 'n-7' → 'n-07' (the one node whose id is it zero-padded);
    'n-04 through n-06' → 'n-04 and n-05 and n-06' (both ends nodes of one prefix: those between them
    that exist); 'edges' → 'edge nodes' (the plural of a group of ids)."""
    out: list[str] = []
    for t in toks:
        if t not in lx.nodes and (m := _NUMBERED.fullmatch(t)):
            same = [k for k in lx.nodes if (n := _NUMBERED.fullmatch(k))
                    and n.group(1).rstrip("-_.") == m.group(1).rstrip("-_.")        # "edge2" is edge-2
                    and int(n.group(2)) == int(m.group(2))]
            t = same[0] if len(same) == 1 else t
        if t.endswith("s") and t[:-1] in lx.groups and t not in lx.nodes and t not in lx.processes:
            out += [t[:-1], "nodes"]
            continue
        out.append(t)
    i = 0
    while i + 2 < len(out):
        a, b = _NUMBERED.fullmatch(out[i]), _NUMBERED.fullmatch(out[i + 2])
        if out[i] in lx.nodes and out[i + 1] in _RANGE_WORDS and out[i + 2] in lx.nodes and a and b \
                and a.group(1) == b.group(1) and int(a.group(2)) < int(b.group(2)):
            lo, hi = int(a.group(2)), int(b.group(2))
            span = sorted((int(n.group(2)), k) for k in lx.nodes if (n := _NUMBERED.fullmatch(k))
                          and n.group(1) == a.group(1) and lo <= int(n.group(2)) <= hi)
            named = [w for _, k in span for w in ("and", k)][1:]
            out[i:i + 3] = named
            i += len(named)
            continue
        i += 1
    return out


def _kick(toks: list[str], lx: Lexicon) -> list[str]:
    """'give the logger [on nb] a kick / a restart / a bounce' → 'restart logger [on nb]'; 'get the worker
    going / running (again)' → 'start worker' (articles are gone by now)."""
    for i, t in enumerate(toks):
        if t not in ("give", "get"):
            continue
        j = _objects_end(toks, i + 1, lx, nodes=False)
        if j == i + 1:
            continue
        m = j + 2 if toks[j:j + 1] == ["on"] and j + 1 < len(toks) and toks[j + 1] in lx.nodes else j
        m += toks[m:m + 1] == ["a"]
        m += toks[m:m + 1] == ["another"]
        if t == "give" and m < len(toks) and toks[m] in ("kick", "restart", "bounce", "nudge"):
            where = toks[j:j + 2] if m > j and toks[j] == "on" else []
            return toks[:i] + ["restart"] + toks[i + 1:j] + where + toks[m + 1:]
        if t == "get" and j < len(toks) and toks[j] in ("going", "running"):
            after = j + 1 + (toks[j + 1:j + 2] == ["again"])
            return toks[:i] + ["start"] + toks[i + 1:j] + toks[after:]
    return toks


def _symptom(toks: list[str], lx: Lexicon) -> list[str]:
    """'the logger on nc keeps crashing, restart it' → 'restart logger on nc': a first clause that only
    says which process is in trouble gives 'it' of the second (which must have it once)."""
    k = next((i for i, t in enumerate(toks) if t in (",", ";", "so")), None)
    if k is None:
        return toks
    a, b = toks[:k], toks[k + 1:]
    i = 1 if a[:1] == ["the"] else 0
    i += i + 1 < len(a) and a[i] in NODE_NOUNS and a[i + 1] in lx.nodes
    if i + 1 < len(a) and a[i] in lx.nodes and a[i + 1] in lx.processes and a[i] not in lx.processes:
        a = a[:i] + [a[i + 1], "on", a[i]] + a[i + 2:]     # "nc's worker needs to die, stop it"
    if i < len(a) and a[i] in lx.nodes and a[i] not in lx.processes:   # "nb is acting up, restart it"
        rest = a[i + 1:]
        if any(w in _SYMPTOMS for w in rest) and all(w in _SYMPTOMS | _SYMPTOM_GLUE for w in rest) \
                and b.count("it") == 1 and not any(w in lx.nodes or w in ("on", "at", "in") for w in b):
            j = b.index("it")
            return b[:j + 1] + ["on", a[i]] + b[j + 1:]    # the node's process: asked for if it has several
        return toks
    if i >= len(a) or a[i] not in lx.processes:
        return toks
    proc, i = a[i], i + 1
    node: list[str] = []
    if a[i:i + 1] in (["on"], ["in"], ["at"]) and i + 1 < len(a) and a[i + 1] in lx.nodes:
        node, i = ["on", a[i + 1]], i + 2
    rest = a[i:]
    if not node and len(rest) >= 2 and rest[-2] == "on" and rest[-1] in lx.nodes:
        node, rest = rest[-2:], rest[:-2]      # "the worker stopped on nb, restart it"
    trouble = _SYMPTOMS | {"stopped", "exited", "restarting"}
    if not any(w in trouble for w in rest) or any(w not in trouble | _SYMPTOM_GLUE and _names_something(w, lx)
                                                  for w in rest) or b.count("it") != 1:
        return toks
    j = b.index("it")
    after = j + 1
    while after < len(b) and b[after] in ("back", "up", "down", "off", "again"):
        after += 1                 # "bring it back up": the node after the particle
    return b[:j] + [proc] + b[j + 1:after] + ([] if "on" in b else node) + b[after:]


#: Words that change what a plan does: a sentence with one of them is never read as context.
_SCOPE = {"all", "every", "each", "everywhere", "everything", "except", "but", "not", "no", "never", "skip", "skipping",
          "avoid", "without", "exclude", "excluding", "only", "other", "others", "rest", "remaining", "leave",
          "spare", "don", "dont", "instead", "also", "then", "first", "next", "after", "before", "same", "both",
          "either", "neither", "none", "nor", "any", "anywhere", "unless", "if", "when", "until", "keep",
          "hold", "wait", "more", "less", "schedule", "cancel", "undo", "revert"}
_ACTION_HEADS = {"shut", "bring", "turn", "switch", "spin", "fire", "kick", "take", "power", "boot", "ensure"}
_CONTEXT_HEADS = {"it", "its", "they", "we", "this", "that", "since", "as", "because", "probably", "which", "he", "she",
                  "i", "our", "my", "something", "seems", "looks", "hopefully", "thanks", "cheers", "so"}


#: How a sentence of context starts: a subject, a greeting or thanks ("We just rotated the certs.", "Hey team.",
#: "Thanks!"), never a verb: "drop table nodes" after a request is another command, and is refused.
_STORY_HEADS = _CONTEXT_HEADS | FILLERS | {"we", "you", "he", "she", "our", "my", "the", "a", "an", "hey", "hi", "hello",
                                           "morning", "good", "thanks", "thank", "cheers", "regards", "best", "sorry",
                                           "fyi", "btw", "ps", "note", "there", "just", "ok", "okay", "alright", "asking",
                                           "curious", "wondering", "context", "background", "ugh", "oh", "ah",
                                           "well", "lol", "haha", "someone", "somebody", "getting", "feeling",
                                           "worried", "kinda", "hopefully", "maybe", "weird", "appreciate",
                                           "ty", "thx", "mate", "hiya", "any", "no", "trying", "noticed"}


_TIMES = {"morning", "day", "night", "week", "afternoon", "evening", "along", "weekend", "year", "month"}


def _names_something(w: str, lx: Lexicon, acts: bool = True, nxt: str = "") -> bool:
    """Whether ``w`` names a node, process, action, number or (in a message with an action) a scope word."""
    if w in lx.nodes or w in lx.processes or w in lx.services or w in lx.groups:
        return True
    if acts and (w in _SCOPE or w in _ACTION_HEADS) and not (w == "all" and nxt in _TIMES):   # "all morning"
        return True
    if VERBS.get(w) in MUTATING or w in GERUNDS or (w,) in PARTICIPLES or re.fullmatch(r"\d+(\.\d+)?", w):
        return True
    if not lx.known(w) and re.fullmatch(r"[a-z][a-z\-]*", w):
        fixed = lx.correct(w)[0]     # a typo of a node, process or action is not context
        return fixed is not None and (fixed in lx.nodes or fixed in lx.processes or VERBS.get(fixed) in MUTATING)
    return False


_PURPOSE_VERBS = {"see", "get", "help", "clear", "fix", "free", "reduce", "cool", "calm", "give", "let", "try", "check",
                  "make", "recover", "reset", "refresh", "flush", "unstick", "unblock", "pick"}


def _purpose(seg: list[str], lx: Lexicon, acts: bool) -> tuple[list[str], str]:
    """A purpose clause at the end of a request, naming nothing: "... to see if that helps", "..., so we
    can see if that calms it down", "... in order to free some memory".  (The request, the clause.)"""
    for k in range(1, len(seg) - 1):
        start = None
        if seg[k] == "to" and seg[k + 1] in _PURPOSE_VERBS:
            start = k
        elif seg[k] == "so" and k + 1 < len(seg) and seg[k + 1] in ("we", "i", "that", "it", "they", "you"):
            start = k
        elif seg[k:k + 3] == ["in", "order", "to"]:
            start = k
        if start is None:
            continue
        clause = seg[start:]
        words = [w for w in clause if w not in ("if", "whether") or clause[max(0, clause.index(w) - 1)] not in
                 ("see", "check")]
        if not any(_names_something(w, lx, acts) for w in words if w not in ("to", "so", "that", "if", "whether")):
            cut = start - (1 if seg[start - 1] == "," else 0)
            return seg[:cut], " ".join(clause)
    return seg, ""


def _story_about_processes(seg: list[str], lx: Lexicon, acts: bool) -> bool:
    """A story sentence that names processes but nothing else the planner acts on (no node, action, number,
    scope word): context, when the request that follows names its own process."""
    def proc(w: str) -> bool:
        if w in lx.processes:
            return True
        fixed = lx.correct(w)[0] if not lx.known(w) and re.fullmatch(r"[a-z][a-z\-]*", w) else None
        return fixed is not None and fixed in lx.processes     # "some loggers died"
    rest = [w for w in seg if not proc(w)]
    return len(rest) < len(seg) and not _names_any(rest, lx, acts)


def _names_any(words: list[str], lx: Lexicon, acts: bool) -> bool:
    return any(_names_something(w, lx, acts, words[k + 1] if k + 1 < len(words) else "") for k, w in enumerate(words))


def context_sentences(toks: list[str], lx: Lexicon) -> tuple[list[str], list[str]]:
    """Split off what only tells the story around a request: a sentence ("Hey team.", "We just rotated the
    certs.") or a comma clause after the request (", they're overloaded", ", since they're barely doing
    anything") that names nothing the planner acts on — no node, process, action, number, or word that
    changes scope (all, except, not, only, then …; ``_SCOPE``).  The tokens left, and the context (kept
    as the plan's reason, never silently dropped).  A message that is only context is left whole."""
    acts = any(VERBS.get(w) in MUTATING or w in GERUNDS or (w,) in PARTICIPLES for w in toks) or any(
        VERB_PHRASES.get(tuple(toks[k:k + 2])) in MUTATING for k in range(len(toks) - 1))
    segs: list[list[str]] = [[]]
    for t in toks:
        if t in (";", "\n"):
            segs.append([])
        else:
            segs[-1].append(t)
    keep: list[list[str]] = []
    context: list[str] = []
    for seg in segs:
        if not seg:
            continue
        if seg[0] in _STORY_HEADS and not _names_any(seg, lx, acts) \
                and any(w.isalpha() for w in seg):
            context.append(" ".join(seg))
            continue
        if (told := _trouble(seg, lx)) is not None:     # "The worker on nb died overnight. Please start it"
            context.append(" ".join(seg))
            keep.append(["$trouble", *told])
            continue
        if seg[0] in _STORY_HEADS and _story_about_processes(seg, lx, acts):
            context.append(" ".join(seg))   # "I think some loggers died overnight." before a request that names its own
            continue
        seg, why = _purpose(seg, lx, acts)
        if why:
            context.append(why)
        # a comma clause after the request: ", they're overloaded"
        out: list[str] = []
        k = 0
        while k < len(seg):
            if seg[k] == "," and k + 1 < len(seg) and seg[k + 1] in _CONTEXT_HEADS and out:
                end = next((j for j in range(k + 1, len(seg)) if seg[j] == ","), len(seg))
                clause = seg[k + 1:end]
                if not _names_any(clause, lx, acts):
                    context.append(" ".join(clause))
                    k = end
                    continue
            out.append(seg[k])
            k += 1
        keep.append(out)
    # a trouble sentence gives "it" of the next sentence ("... died overnight. Please start it again")
    for k, seg in enumerate(keep):
        if seg[:1] == ["$trouble"]:
            nxt = keep[k + 1] if k + 1 < len(keep) else None
            its = [j for j, w in enumerate(nxt or []) if w == "it" and not (j and nxt[j - 1] == "at")]  # type: ignore[index]
            if nxt is None or len(its) != 1 or nxt[:1] == ["$trouble"]:
                return toks, []
            told = seg[1:]
            j = its[0]
            assert nxt is not None
            after = j + 1
            while after < len(nxt) and nxt[after] in ("back", "up", "down", "off", "again"):
                after += 1      # "start it back up": the node after the particle
            stop = next((m for m in range(j, len(nxt)) if nxt[m] in (",", "then", "and")), len(nxt))
            named = "on" in nxt[j:stop] or any(w in lx.nodes for w in nxt[j:stop])
            where = [] if named else told[1:]
            keep[k + 1] = nxt[:j] + told[:1] + nxt[j + 1:after] + where + nxt[after:]
    keep = [seg for seg in keep if seg[:1] != ["$trouble"]]
    if not keep or not context:
        return toks, []
    flat: list[str] = []
    for seg in keep:
        flat += [*seg, ";"]
    return flat[:-1], context


def _trouble(seg: list[str], lx: Lexicon) -> list[str] | None:
    """'[the] PROC [on NODE] <how it is in trouble>': [PROC, 'on', NODE] (or [PROC]); else None.  The words
    after it may say anything but name another node, process, action, number or scope word."""
    i = 0
    while i < len(seg) and (seg[i] in FILLERS or seg[i] in (",", "morning", "team", "all", "there")):
        i += 1          # "hey, the logger on edge-2 ..."
    if seg[i:i + 2] in (["i", "noticed"], ["i", "see"], ["i", "think"], ["looks", "like"], ["seems", "like"]):
        i += 2          # "I noticed the worker on nb is down"
        i += seg[i:i + 1] == ["that"]
    i += seg[i:i + 1] == ["the"]
    if i + 1 < len(seg) and seg[i] in lx.nodes and seg[i + 1] in lx.processes:     # "nb's worker ..."
        proc, node, i = seg[i + 1], [seg[i]], i + 2
    elif i < len(seg) and seg[i] in lx.processes:
        proc, node, i = seg[i], [], i + 1
        if seg[i:i + 1] == ["on"] and i + 1 < len(seg) and seg[i + 1] in lx.nodes:
            node, i = [seg[i + 1]], i + 2
    else:
        return None
    rest = seg[i:]
    if not rest or not any(w in _SYMPTOMS or w in _REMARK_STATES or (w,) in PARTICIPLES for w in rest):
        return None
    if any(_names_something(w, lx) and not (w in _SYMPTOMS or w in _REMARK_STATES or (w,) in PARTICIPLES
                                            or w in ("again", "since", "when", "until") or w.isdigit()) for w in rest):
        return None
    return [proc, *(["on", *node] if node else [])]


def _metric_hints(toks: list[str]) -> list[str]:
    """'busiest in terms of cpu', 'busiest cpu wise', 'busiest cpu-wise' → 'busiest cpu'."""
    out: list[str] = []
    i = 0
    metric_words = {w for t in METRICS for w in t}
    while i < len(toks):
        if toks[i:i + 3] == ["in", "terms", "of"] and i + 3 < len(toks) and toks[i + 3] in metric_words:
            i += 3
            continue
        if toks[i] == "wise" and out and out[-1] in metric_words:
            i += 1
            continue
        if toks[i].endswith("-wise") and toks[i][:-5] in metric_words:
            out.append(toks[i][:-5])
            i += 1
            continue
        out.append(toks[i])
        i += 1
    return out


#: Chat shorthand, read as the word unless a node or process has that name: "which nodes r offline", "w temp".
_SHORTHAND = {"r": "are", "w": "with", "u": "you", "ur": "your", "thru": "through", "b4": "before", "n": "and"}


def _this_node(toks: list[str], lx: Lexicon) -> list[str]:
    """'this node', 'the local node', 'this box': the node the planner asks through, by its id.  Without
    one known (no view of it), the words stay and are refused."""
    if not lx.self_id:
        return toks
    out: list[str] = []
    i = 0
    while i < len(toks):
        if toks[i] in ("this", "local") and i + 1 < len(toks) and (toks[i + 1] in NODE_NOUNS or toks[i + 1] == "one") \
                and not toks[i + 1].endswith("s") and (toks[i] == "local" or toks[i + 1] != "one"):
            out.append(lx.self_id)
            i += 2
            continue
        out.append(toks[i])
        i += 1
    return out


def _is_remark(seg: list[str], lx: Lexicon) -> bool:
    return (bool(seg) and seg[0] in _REMARK_HEADS and any(w in _REMARK_STATES for w in seg)
            and all(w in _REMARK_WORDS and w not in lx.nodes and w not in lx.processes for w in seg))


def _remarks(toks: list[str], lx: Lexicon) -> list[str]:
    """Drop remarks about the request ("..., it seems to have stopped"; see ``_REMARK_WORDS``): a sentence
    or comma clause that is one, or such a tail right after a node id or process name ("start logger on
    nb its stopped").  A message that is only remarks is left as it is (and refused)."""
    cuts = [k for k, t in enumerate(toks) if t in (";", "\n", ",")]
    out: list[str] = []
    start = 0
    for end in [*cuts, len(toks)]:
        seg = toks[start:end]
        if _is_remark(seg, lx):
            while out and out[-1] in (";", "\n", ","):
                out.pop()
        else:
            out += seg
            if end < len(toks):
                out.append(toks[end])
        start = end + 1
    for k in range(1, len(out)):
        if out[k] in ("it", "its", "they") and (out[k - 1] in lx.nodes or out[k - 1] in lx.processes) \
                and _is_remark(out[k:], lx):
            out = out[:k]
            break
    while out and out[0] in (";", "\n", ","):
        out.pop(0)
    if not [t for t in out if t not in (";", "\n", ",")]:
        return toks
    return out


def _whether(toks: list[str]) -> list[str]:
    """'check whether / if the logger is up on nd' → 'is the logger up on nd' (a question, read-only)."""
    k = _lead(toks)
    if k + 2 < len(toks) and toks[k] in ("check", "see", "verify", "confirm") and toks[k + 1] in ("whether", "if"):
        be = next((i for i in range(k + 2, len(toks)) if toks[i] in ("is", "are")), None)
        if be is not None and be > k + 2:
            return toks[:k] + [toks[be]] + toks[k + 2:be] + toks[be + 1:]
    return toks


def _light(toks: list[str]) -> list[str]:
    """'please do restart of the logger', 'go restart', 'try restarting', 'need restart logger nb' → the
    action itself (only right before a restart/stop/start word at the start of the request)."""
    k = _lead(toks)
    if k + 1 < len(toks) and toks[k] in LIGHT:
        nxt = toks[k + 1]
        verb = GERUNDS.get(nxt) or (VERBS.get(nxt) if VERBS.get(nxt) in MUTATING else None)
        if verb:
            rest = toks[k + 2:]
            if rest[:1] == ["of"]:           # "do restart of logger"
                rest = rest[1:]
            return toks[:k] + [nxt if nxt in VERBS else verb] + rest
    return toks


def _node_first(toks: list[str], lx: Lexicon) -> list[str]:
    """'restart nb's logger', 'restart the nb logger' → 'restart logger on nb' (right after a verb only)."""
    out = list(toks)
    for k in range(1, len(out) - 1):
        verb = VERBS.get(out[k - 1]) or (VERB_PHRASES.get((out[k - 2], out[k - 1])) if k >= 2 else None)
        if verb in MUTATING and out[k] in lx.nodes and out[k] not in lx.processes and out[k + 1] in lx.processes \
                and not out[k].isdigit():      # "restart 7 workers" is a count, not node 7
            j = _objects_end(out, k + 1, lx, nodes=False)
            return out[:k] + out[k + 1:j] + ["on", out[k]] + out[j:]
    return out


def _objects_end(toks: list[str], i: int, lx: Lexicon, nodes: bool) -> int:
    """Index after the run of object words (processes, pronouns, 'and') starting at ``i``."""
    while i < len(toks) and (toks[i] in lx.processes or toks[i] in _OBJECT_WORDS or (nodes and toks[i] in lx.nodes)):
        i += 1
    return i


def _separable(toks: list[str], lx: Lexicon) -> list[str]:
    out = list(toks)
    i = 0
    while i < len(out):
        if out[i] in _SEPARABLE_HEADS and (i + 1 < len(out)) and not _match(out, i, SEPARABLE):
            j = _objects_end(out, i + 1, lx, nodes=True)
            if j > i + 1:
                n = next((n for n in (3, 2, 1) if j + n <= len(out) and tuple(out[i:i + 1] + out[j:j + n]) in SEPARABLE), 0)
                after = out[j + n] if j + n < len(out) else None
                if n and (out[j + n - 1] != "on" or after is None or after in _BOUNDARY or after in PREPS):
                    out = out[:i + 1] + out[j:j + n] + out[i + 1:j] + out[j + n:]
                    i += n
        i += 1
    return out


def _participle_at(toks: list[str], k: int) -> tuple[str, int] | None:
    n = _match(toks, k, PARTICIPLES)
    return (PARTICIPLES[tuple(toks[k:k + n])], n) if n else None


def _lead(toks: list[str], i: int = 0) -> int:
    """Index after the politeness at ``i``: 'hey, can you please ...', 'would you mind ...'."""
    while i < len(toks):
        if toks[i] in FILLERS or toks[i] == ",":
            i += 1
        elif n := _match(toks, i, FILLER_PHRASES):
            i += n
        else:
            break
    return i


def _participles(toks: list[str], lx: Lexicon) -> list[str]:
    start = _lead(toks)
    if start < len(toks) and toks[start] in GERUNDS:   # "would you mind restarting the logger"
        return toks[:start] + [GERUNDS[toks[start]]] + toks[start + 1:]
    n = _match(toks, start, INTENTS)
    if n == 0 or start + n >= len(toks) or not (toks[start + n] in lx.processes or toks[start + n] in _OBJECT_WORDS):
        return toks
    out = toks[:start]
    rest = toks[start + n:]
    while rest:
        # the clause's words up to its participle; a boundary or a negation first: no rewrite
        k = 0
        while k < len(rest) and rest[k] not in _STOP_AT and _participle_at(rest, k) is None:
            k += 1
        found = _participle_at(rest, k) if k < len(rest) else None
        if found is None or k == 0:
            return toks
        verb, m = found
        before = rest[:k]
        while before and before[-1] in ("were", "was", "be", "is", "are", "got", "get"):
            before = before[:-1]      # "I'd rather the worker were stopped on ..."
        out += [verb] + before
        rest = rest[k + m:]
        # the clause's target after the participle ("restarted on the warmest server"), up to
        # "and the worker stopped on nc": the next clause in the same form
        nxt = next((j for j in range(len(rest)) if rest[j] in ("and", ",") and _same_form(rest, j + 1, lx)), None)
        if nxt is None:
            out += rest
            break
        out += rest[:nxt + 1]
        rest = rest[nxt + 1:]
    return out


def _same_form(toks: list[str], i: int, lx: Lexicon) -> bool:
    """Whether toks[i:] starts 'PROCESS ... PARTICIPLE' before any boundary."""
    if i >= len(toks) or toks[i] not in lx.processes:
        return False
    for j in range(i + 1, len(toks)):
        if toks[j] in _STOP_AT or toks[j] in ("and", ","):
            return False
        if _participle_at(toks, j) is not None:
            return True
    return False


def _needs(toks: list[str], lx: Lexicon) -> list[str]:
    """'OBJECTS [TARGET] needs|should ... VERB' at the start of a clause."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        start = i
        modal = toks[i] in MODALS and i + 1 < len(toks) and toks[i + 1] in lx.processes and (
            i == 0 or toks[i - 1] in (";", "\n", "then") or toks[i - 1] in FILLERS)
        if modal:          # "could the logger on nc be restarted": as "the logger on nc should be restarted"
            i += 1
            start = i
        if toks[i] in lx.processes or toks[i] in ("it", "every", "all", "both"):
            k = i
            stop = ("be",) if modal else NEEDS
            while k < len(toks) and toks[k] not in stop and toks[k] not in _STOP_AT and toks[k] not in VERBS:
                k += 1
            if k < len(toks) and toks[k] in stop:
                j = k + 1
                for filler in ((("to", "be"), ("be",), ("to",), ("a",), ("an",), ("some",)) if not modal else ()):
                    if tuple(toks[j:j + len(filler)]) == filler:
                        j += len(filler)
                        break
                w = toks[j] if j < len(toks) else ""
                p = _participle_at(toks, j)
                verb = GERUNDS.get(w) or (VERBS.get(w) if VERBS.get(w) in MUTATING else None) or (p and p[0])
                width = p[1] if p and not GERUNDS.get(w) and VERBS.get(w) not in MUTATING else 1
                after = toks[j + width] if j + width < len(toks) else None
                if verb and (after is None or after in _BOUNDARY or after in FILLERS
                             or after in ("on", "at", "in", "across", "everywhere", "wherever", "for")):
                    out += [verb] + toks[start:k]
                    i = j + width
                    continue
            if modal:
                i = start - 1          # not that form: the modal stays (and is refused)
        # copy this clause's words up to the next boundary
        while i < len(toks):
            out.append(toks[i])
            i += 1
            if out[-1] in (";", "\n", "then"):
                break
    return out


def _join_ids(toks: list[str], lx: Lexicon) -> list[str]:
    """'node a' → 'node-a', 'log shipper' → 'log-shipper' where exactly that node id or process exists;
    'nodes a and c' → 'nodes node-a and node-c' when every one of the list exists so."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        if toks[i] in NODE_NOUNS and toks[i].endswith("s") and i + 1 < len(toks):
            head, j, named = toks[i][:-1], i + 1, []
            while j < len(toks) and (toks[j] in ("and", ",") or f"{head}-{toks[j]}" in lx.nodes):
                named.append(f"{head}-{toks[j]}" if toks[j] not in ("and", ",") else toks[j])
                j += 1
            if sum(1 for t in named if t not in ("and", ",")) >= 2 and named[-1] not in ("and", ","):
                out += [toks[i], *named]
                i = j
                continue
        if i + 1 < len(toks) and toks[i] not in lx.nodes and toks[i] not in lx.processes:
            for sep in ("-", "_", ""):
                if sep == "" and not toks[i + 1].isdigit():
                    continue   # "pi 4" is pi4, but "n b" is not nb: two words are not run together on a guess
                joined = toks[i] + sep + toks[i + 1]
                if (joined in lx.nodes or joined in lx.processes) and toks[i + 1] not in lx.nodes \
                        and toks[i + 1] not in lx.processes:
                    out.append(joined)
                    i += 2
                    break
            else:
                out.append(toks[i])
                i += 1
            continue
        out.append(toks[i])
        i += 1
    return out


def _article(toks: list[str], k: int, lx: Lexicon) -> bool:
    """'the', 'an', and 'a' unless it is a node id standing alone."""
    t = toks[k]
    if t in ("the", "an"):
        return True
    if t != "a":
        return False
    if "a" not in lx.nodes:
        return True
    nxt = toks[k + 1] if k + 1 < len(toks) else ""
    return nxt in NODE_NOUNS or nxt in ("few", "couple", "single", "random", "bit", "quick", "health", "summary",
                                        "overview", "look", "moment", "lot", "little", "short", "brief") \
        or nxt in lx.processes \
        or any(nxt == m[0] for m in METRICS) or any(nxt == s[0] for s in SUPERLATIVES) or nxt in PROC_NOUNS


def _word(t: str, lx: Lexicon, pos: int, prev: Lexeme | None, nxt: str = "") -> Lexeme:
    if t in lx.groups and nxt in NODE_NOUNS:      # "the edge nodes"
        return Lexeme("group", t, (t,), pos)
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return Lexeme("num", float(t), (t,), pos)
    if t in ORDINALS and t != "next":
        return Lexeme("ord", ORDINALS[t], (t,), pos)
    if re.fullmatch(r"\d+(st|nd|rd|th)", t):
        return Lexeme("ord", int(t[:-2]), (t,), pos)
    if t in lx.processes:
        return Lexeme("proc", lx.processes[t], (t,), pos)
    if t in UNITS and (t != "c" or (prev is not None and prev.kind == "num")):
        return Lexeme("unit", UNITS[t], (t,), pos)
    if t in VERBS:
        return Lexeme("verb", VERBS[t], (t,), pos)
    if t in COUNTS:
        return Lexeme("count", COUNTS[t], (t,), pos)
    if t in NODE_NOUNS:
        return Lexeme("nnoun", t.endswith("s") and t not in ("box",), (t,), pos)
    if t in PROC_NOUNS:
        return Lexeme("pnoun", t in _PLURAL_PROC, (t,), pos)
    if t in lx.services:
        return Lexeme("service", lx.services[t], (t,), pos)
    if t in METRIC_ADJ:
        return Lexeme("adj", METRIC_ADJ[t], (t,), pos)
    if t in (",", "&"):
        return Lexeme("punct", t, (t,), pos)
    if t in (";", "\n"):
        return Lexeme("seq", t, (t,), pos)
    if t in ARTICLES:
        return Lexeme("article", t, (t,), pos)
    if t in FILLERS:
        return Lexeme("filler", t, (t,), pos)
    if t in BASE_VOCAB:
        return Lexeme("word", t, (t,), pos)
    return Lexeme("unknown", t, (t,), pos)
