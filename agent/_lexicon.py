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
    "reload": "restart", "cycle": "restart", "respawn": "restart", "kick": "restart",
    "stop": "stop", "terminate": "stop", "kill": "stop", "halt": "stop", "shutdown": "stop", "end": "stop",
    "start": "start", "launch": "start", "boot": "start",
    "status": "status", "check": "status", "health": "status", "healthcheck": "status", "state": "status",
    "logs": "logs", "log": "logs", "tail": "logs", "output": "logs",
    "show": "show", "list": "show", "display": "show", "get": "show", "give": "show", "print": "show",
    "tell": "show", "view": "show", "see": "show", "find": "show", "fetch": "show", "report": "show",
    "describe": "describe",
}
VERB_PHRASES: dict[tuple[str, ...], str] = {
    ("shut", "down"): "stop", ("shut", "off"): "stop", ("take", "down"): "stop", ("bring", "down"): "stop",
    ("turn", "off"): "stop", ("switch", "off"): "stop", ("bring", "up"): "start", ("spin", "up"): "start",
    ("fire", "up"): "start", ("boot", "up"): "start", ("turn", "on"): "start", ("switch", "on"): "start",
    ("start", "up"): "start", ("kick", "off"): "start", ("power", "cycle"): "restart", ("check", "on"): "status",
    ("health", "of"): "status", ("status", "of"): "status", ("state", "of"): "status",
    ("health", "check"): "status", ("look", "at"): "show", ("show", "me"): "show", ("give", "me"): "show",
    ("tell", "me"): "show", ("let", "me", "see"): "show", ("list", "out"): "show",
}
MUTATING = {"restart", "start", "stop"}
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
    ("storage",): "disk_percent",
}
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
_sup(["most loaded", "busiest", "highest load", "most load", "heaviest load", "most busy"], "load_1m", _UP)
_sup(["least loaded", "least busy", "idlest", "quietest", "lowest load", "least load", "lightest load",
      "most idle", "laziest"], "load_1m", _DOWN)
_sup(["highest cpu", "most cpu", "highest cpu usage", "most cpu usage", "highest cpu load"], "cpu_percent", _UP)
_sup(["lowest cpu", "least cpu", "lowest cpu usage", "least cpu usage", "lowest cpu load"], "cpu_percent", _DOWN)
_sup(["most free memory", "most memory free", "most available memory", "most free ram", "most ram free",
      "lowest memory usage", "lowest memory", "least memory used", "least memory", "most spare memory",
      "least ram", "lowest ram usage", "most memory available", "maximum free memory"],
     "free_memory_percent", _UP)
_sup(["least free memory", "least memory free", "least available memory", "least free ram", "highest memory usage",
      "highest memory", "most memory used", "most memory", "most ram", "highest ram usage", "fullest memory"],
     "free_memory_percent", _DOWN)
_sup(["emptiest disk", "most free disk", "most free disk space", "most disk space", "lowest disk usage",
      "lowest disk", "least disk used", "least full disk", "most disk free", "least disk usage"], "disk_percent", _DOWN)
_sup(["fullest disk", "least free disk", "least free disk space", "least disk space", "highest disk usage",
      "highest disk", "most disk used", "most disk usage", "fullest"], "disk_percent", _UP)

# comparison words → (op, metric hint or None)
COMPARISONS: dict[tuple[str, ...], tuple[str, str | None]] = {
    ("under",): ("lt", None), ("below",): ("lt", None), ("less", "than"): ("lt", None),
    ("lower", "than"): ("lt", None), ("fewer", "than"): ("lt", None), ("<",): ("lt", None),
    ("over",): ("gt", None), ("above",): ("gt", None), ("more", "than"): ("gt", None),
    ("greater", "than"): ("gt", None), ("higher", "than"): ("gt", None), ("exceeding",): ("gt", None),
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
           ("and", "under"): "le"}
UNITS = {"degrees": "temperature_c", "degree": "temperature_c", "deg": "temperature_c", "°c": "temperature_c",
         "°": "temperature_c", "celsius": "temperature_c", "c": "temperature_c", "%": "percent",
         "percent": "percent", "pct": "percent"}

ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7,
            "8th": 8, "9th": 9, "10th": 10, "next": 2}
COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
          "ten": 10, "top": 0, "couple": -1, "few": -1, "some": -1, "several": -1}

NODE_NOUNS = {"node", "nodes", "host", "hosts", "server", "servers", "machine", "machines", "box", "boxes",
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
}
FILLERS = {"please", "pls", "plz", "kindly", "just", "quickly", "now", "thanks", "thx", "cheers", "hey", "hi",
           "ok", "okay", "so", "the", "an", "me", "asap", "again", "currently", "immediately", "hello", "yo",
           "sir", "folks", "team", "guys", "quick", "promptly"}
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
    "details", "detail", "information", "about", "we",
}


def _phrase_vocab() -> set[str]:
    words: set[str] = set()
    for table in (VERB_PHRASES, METRICS, SUPERLATIVES, COMPARISONS, FILLER_PHRASES):
        for t in table:
            words.update(t)
    return words


BASE_VOCAB = (set(VERBS) | _phrase_vocab() | set(METRIC_ADJ) | set(UNITS) | set(ORDINALS) | set(COUNTS)
              | NODE_NOUNS | PROC_NOUNS | PREPS | FILLERS | STRUCTURAL | QUESTION_WORDS)


# ---- normalisation --------------------------------------------------------------------------

_CONTRACTIONS = [
    (r"\bwhat's\b", "what is"), (r"\bwhats\b", "what is"), (r"\bwhere's\b", "where is"), (r"\bhow's\b", "how is"),
    (r"\bwho's\b", "who is"), (r"\bthat's\b", "that is"), (r"\bit's\b", "it is"), (r"\bthere's\b", "there is"),
    (r"\bdon't\b", "do not"), (r"\bdont\b", "do not"), (r"\bdoesn't\b", "does not"), (r"\bisn't\b", "is not"),
    (r"\baren't\b", "are not"), (r"\bcan't\b", "can not"), (r"\bcannot\b", "can not"), (r"\bwon't\b", "will not"),
    (r"\bshouldn't\b", "should not"), (r"\bdidn't\b", "did not"), (r"\blet's\b", "let us"), (r"\blets\b", "let us"),
    (r"\bi'd\b", "i would"), (r"\bi'm\b", "i am"), (r"\bwhich's\b", "which is"),
]
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:st|nd|rd|th)?|[a-z0-9](?:[a-z0-9_.\-]*[a-z0-9])?|°c?|>=|<=|[,;&<>%]|\n|\S")


def normalise(text: str) -> list[str]:
    """Lower case, unify quotes and units, expand contractions; the word and symbol tokens."""
    s = text.replace("\u2019", "'").replace("\u2018", "'").replace("º", "°").replace("\r", "\n")
    s = s.lower()
    for pat, rep in _CONTRACTIONS:
        s = re.sub(pat, rep, s)
    s = re.sub(r"([a-z0-9])'s\b", r"\1", s)          # possessive: nc's -> nc
    s = re.sub(r"(\d)\s*°\s*c\b", r"\1 °c", s)        # 45°C, 45 ° C
    s = re.sub(r"(\d)°", r"\1 °", s)
    s = re.sub(r"(\d)\s*%", r"\1 %", s)
    s = re.sub(r"(\d)(degrees?|deg|c)\b", r"\1 \2", s)  # 45c, 40degrees
    s = re.sub(r"[\"`]|(?<![a-z0-9])'|'(?![a-z0-9])", " ", s)   # quotes around words (brackets stay: refused)
    s = re.sub(r":(?!\d)", " ", s)                     # "on: nb"
    s = re.sub(r"\s*\.{2,}\s*$", "", s)                # a trailing "..." (inside, ".." stays: edge-1..edge-3 is refused)
    s = re.sub(r"\b(teh|hte)\b", "the", s)
    s = re.sub(r"\badn\b", "and", s)
    s = re.sub(r"\s\+\s", " and ", s)
    s = re.sub(r"\s@\s", " at ", s)
    s = re.sub(r"\b(first|second|third|fourth|fifth|\d+(?:st|nd|rd|th)|least|most)-(?=[a-z])", r"\1 ", s)
    s = re.sub(r"\.(\s|$)", r" ; \1", s)              # a sentence end is a step boundary
    s = re.sub(r"[!?]+", " ", s)
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
        vocab = sorted(BASE_VOCAB | set(procs) | set(services))
        return cls(nodes=nodes, processes=procs, services=services, methods=methods, ambiguous_ids=ambiguous,
                   vocab=vocab)

    def known(self, word: str) -> bool:
        return word in BASE_VOCAB or word in self.nodes or word in self.processes or word in self.services

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
    for n in range(min(6, len(tokens) - i), 0, -1):
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
        for table, kind in ((FILLER_PHRASES, "filler"), (VERB_PHRASES, "verb"), (SUPERLATIVES, "sup"),
                            (COMPARISONS, "cmp"), (METRICS, "metric")):
            n = _match(toks, i, table)
            if n:
                words = tuple(toks[i:i + n])
                value = None if kind == "filler" else table[words]  # type: ignore[index]
                out.append(Lexeme(kind, value, words, len(out)))
                i += n
                break
        else:
            out.append(_word(t, lx, len(out), prev))
            i += 1
    unknown = [x for x in out if x.kind == "unknown"]
    return out, corrections, unknown


def _join_ids(toks: list[str], lx: Lexicon) -> list[str]:
    """'node a' → 'node-a', 'log shipper' → 'log-shipper' where exactly that node id or process exists."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        if i + 1 < len(toks) and toks[i] not in lx.nodes and toks[i] not in lx.processes:
            for sep in ("-", "_", ""):
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
    return nxt in NODE_NOUNS or nxt in ("few", "couple", "single", "random", "bit") or nxt in lx.processes \
        or any(nxt == m[0] for m in METRICS) or any(nxt == s[0] for s in SUPERLATIVES) or nxt in PROC_NOUNS


def _word(t: str, lx: Lexicon, pos: int, prev: Lexeme | None) -> Lexeme:
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
