"""Stage 3 of the offline parse: lexemes → a typed intermediate form (steps with target expressions).

Every lexeme must be consumed by a rule or be a listed filler word; any other
word ends the parse with a :class:`Refusal` that names it.  Where the words
are clear but the request leaves a choice open ("restart it", "stop
everything", "on na or nb"), the parse ends with a :class:`Clarification`:
a question and the options.  Nothing is guessed.

    request   := clause { (then | and then | , | ; | and VERB) clause }
    clause    := VERB objects [target] | question
    objects   := PROC {and PROC} | it | every process | everything
    target    := [on] union { except union }
    union     := term { (and | ,) term }
    term      := all [nodes] post* | [N|ORD] SUPERLATIVE [node] post* | node post* [which is SUPERLATIVE]
               | ID | the others | there
    post      := CMP NUMBER [UNIT] | METRIC CMP NUMBER | between N and N | running PROC | that has it | ...

Pure logic, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, TypeGuard

from ._lexicon import (ARTICLES, COMPARATIVES, MUTATING, NODE_NOUNS, OR_MORE, SUP_ADJ_DOWN, SUP_ADJ_UP, SUPERLATIVES, Lexeme,
                       context_sentences,
                       Lexicon, lex,
                       normalise)
from ._target import All, Cond, Except, Expr, Filter, Group, Has, Ids, Others, Rank, Same, Union, is_broad

MAX_WORDS = 80


class Refusal(Exception):
    """The request can't be planned; ``str(e)`` says why, naming the words at fault."""


class Clarification(Exception):
    """The request is clear in its words but leaves a choice open."""

    def __init__(self, question: str, options: list[str]) -> None:
        super().__init__(question)
        self.question = question
        self.options = options


@dataclass
class Step:
    """One step of the intermediate form."""

    verb: str                        # restart stop start status logs processes metrics nodes node describe info
    processes: list[str] = field(default_factory=list)
    all_processes: bool = False      # "every process"
    pronoun: bool = False            # "it" as the process
    target: Expr | None = None
    metric: str | None = None        # focus of a metrics question
    lines: int | None = None
    service: str | None = None
    limit: int | None = None
    include_offline: bool = False    # a plain node listing shows offline nodes too
    ensure: bool = False             # "make sure X is running": only where it is not (nothing to do is no error)
    asked: str = ""                  # a status question's state word: "running" or "stopped" ("is X stopped on nb?")
    words: str = ""

    @property
    def mutating(self) -> bool:
        return self.verb in MUTATING

    def show(self) -> dict[str, Any]:
        d: dict[str, Any] = {"verb": self.verb}
        if self.processes:
            d["processes"] = self.processes
        if self.all_processes:
            d["processes"] = "every process"
        if self.pronoun:
            d["processes"] = "it"
        d["target"] = self.target.show() if self.target is not None else None
        for k in ("metric", "lines", "service"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@dataclass
class Parsed:
    steps: list[Step]
    corrections: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""

    def show(self) -> dict[str, Any]:
        return {"steps": [s.show() for s in self.steps],
                "corrections": [f"read {a!r} as {b!r}" for a, b in self.corrections],
                **({"reason": self.reason} if self.reason else {})}


_ALLWORDS = {"all", "every", "each", "everywhere"}
#: After "any NODE", the start of a condition: "any node running above 70" means every node that does.
_ANY_CONDITION = ("running", "that", "which", "with", "whose", "where", "hotter", "cooler", "warmer", "colder",
                  "above", "below", "over", "under", "using", "without")
_ADJ_SUP = {"hot": "hottest", "warm": "warmest", "cold": "coldest", "cool": "coolest", "chilly": "coolest",
            "busy": "busiest", "loaded": "most loaded", "idle": "least loaded", "full": "fullest disk"}
_EXCEPT1 = {"except", "excluding", "exclude", "besides", "minus", "save", "skip", "skipping", "omitting"}
_RUNWORDS = {"runs", "run", "running", "has", "have", "having", "hosting", "hosts", "supervise", "supervises",
             "supervising", "with", "host"}
_STATEWORDS = {"running", "up", "alive", "doing", "ok", "fine", "healthy", "down", "stopped"}
_Q = {"how", "what", "which", "where", "who", "is", "are", "does", "do"}
_NEG = {"not", "no", "never", "dont", "don"}


def _is(x: Lexeme | None, *words: str) -> TypeGuard[Lexeme]:
    return x is not None and x.kind in ("word", "count", "ord", "filler", "article", "punct", "unit", "verb",
                                        "adj", "nnoun", "pnoun") and x.words[-1] in words and len(x.words) == 1


class _Clause:
    """A cursor over one clause's lexemes."""

    def __init__(self, lexemes: list[Lexeme]) -> None:
        self.x = lexemes
        self.i = 0

    def peek(self, k: int = 0) -> Lexeme | None:
        j = self.i + k
        return self.x[j] if j < len(self.x) else None

    def kind_at(self, k: int = 0) -> str | None:
        """The kind of the lexeme ``k`` ahead, None past the end."""
        t = self.peek(k)
        return t.kind if t is not None else None

    def value_at(self, k: int = 0) -> Any:
        """The value of the lexeme ``k`` ahead, None past the end."""
        t = self.peek(k)
        return t.value if t is not None else None

    def take(self) -> Lexeme:
        t = self.x[self.i]
        self.i += 1
        return t

    def word(self, *words: str) -> bool:
        if _is(self.peek(), *words):
            self.i += 1
            return True
        return False

    def kind(self, kind: str) -> Lexeme | None:
        t = self.peek()
        if t is not None and t.kind == kind:
            self.i += 1
            return t
        return None

    def done(self) -> bool:
        return self.i >= len(self.x)

    def rest(self) -> str:
        return " ".join(t.text for t in self.x[self.i:])


def _refuse_word(t: Lexeme, why: str = "") -> Refusal:
    return Refusal(f"I don't understand {t.text!r}" + (f" {why}" if why else "") + "; nothing was planned")


# ---- the request ------------------------------------------------------------------------------

def parse(text: str, lx: Lexicon) -> Parsed:
    tokens = normalise(text)
    if len(tokens) > MAX_WORDS:
        raise Refusal(f"the request is too long ({len(tokens)} words; at most {MAX_WORDS})")
    tokens, context = context_sentences(tokens, lx)
    lexemes, corrections, unknown = lex(tokens, lx)
    reason = ""
    because = next((k for k, t in enumerate(lexemes) if _is(t, "because")), None)
    if because is not None:
        end = next((k for k in range(because + 1, len(lexemes)) if lexemes[k].kind == "seq"), len(lexemes))
        tail = lexemes[because + 1:end]     # the reason runs to the end of its sentence
        if not tail or any(t.kind in ("node", "verb", "proc") or _is(t, *_NEG, "except", "but", "and", "then")
                           for t in tail):
            raise Refusal("I only take a short reason after 'because' (no nodes, processes, actions or "
                          "exclusions in it); nothing was planned")
        reason = " ".join(t.text for t in tail)
        lexemes = lexemes[:because] + lexemes[end:]
        unknown = [u for u in unknown if u.pos < because or u.pos >= end]
    if context:
        reason = "; ".join(filter(None, [reason, *context]))
    if unknown:
        words = ", ".join(repr(u.text) for u in unknown[:5])
        close = {u.text: lx.correct(u.text)[1] for u in unknown[:5]}
        hints = [f"{w!r}: did you mean {' or '.join(repr(x) for x in c[:3])}?" for w, c in close.items() if c]
        if hints:
            raise Refusal(f"I don't understand {words} ({'; '.join(hints)}); nothing was planned")
        looks_like_node = [u.text for u in unknown if re.fullmatch(r"[a-z0-9]+(?:[-_.][a-z0-9]+)+|[a-z]*\d+[a-z\d]*",
                                                                    u.text)]
        extra = "".join(f"; there is no node {w!r} in the cluster (nor a process of that name)"
                        for w in looks_like_node[:3])
        raise Refusal(f"I don't understand {words}{extra}; nothing was planned")
    for k in range(len(lexemes) - 1):
        if _is(lexemes[k], *_NEG) and (_is(lexemes[k + 1], "just", "only", "all", "every", "everywhere")
                                        or lexemes[k + 1].text == "just"):
            raise Refusal(f"'{lexemes[k].text} {lexemes[k + 1].text}' leaves the targets open; name the nodes. "
                          "Nothing was planned")
    # "... please and thank you": an "and" followed only by politeness goes with it
    for k, t in enumerate(lexemes):
        if _is(t, "and") and k + 1 < len(lexemes) and all(x.kind == "filler" for x in lexemes[k + 1:]):
            t.kind = "filler"
    solid = [t for t in lexemes if t.kind not in ("seq", "punct")]
    if len(solid) in (2, 3) and solid[0].kind == "node" and (len(solid) == 2 or _is(solid[1], "is")) and \
            _is(solid[-1], "ok", "okay", "fine", "healthy", "alive", "up", "down", "online", "offline", "good"):
        return Parsed(steps=[Step(verb="node", target=Ids([str(solid[0].value)]))], corrections=corrections,
                      reason=reason)      # "nb ok?"
    if _overview(lexemes):      # "are we in trouble anywhere?", "a quick health summary of everything"
        return Parsed(steps=[Step(verb="nodes", target=All(), include_offline=True, words=text.strip()[:80])],
                      corrections=corrections, reason=reason)
    # "what is actually running on nc": an intensifier in a question; in an action ("on na, actually nb") it is
    # a correction, and stays to be refused
    acts = any(t.kind == "verb" and t.value in MUTATING for t in lexemes)
    for k, t in enumerate(lexemes):
        nxt = lexemes[k + 1] if k + 1 < len(lexemes) else None
        if _is(t, "actually", "really") and (not acts or (nxt is not None and nxt.kind == "word" and _is(
                nxt, "running", "stopped", "up", "down", "is", "are", "has", "have", "runs", "run"))):
            t.kind = "filler"     # "where it's actually running"
        if _is(t, "recent", "latest") and nxt is not None and (_is(nxt, "log", "logs", "output", "lines")
                                                               or (nxt.kind == "verb" and nxt.value == "logs")
                                                               or nxt.kind == "proc"):
            t.kind = "filler"     # "the recent logs of the worker"
    # fillers go; a node called "a" was lexed as a node already, so articles here are articles
    lexemes = [t for t in lexemes if t.kind not in ("filler", "article") and not _is(t, "only")]
    while lexemes and lexemes[-1].kind in ("seq", "punct"):   # "..., thanks." / "restart it everywhere."
        lexemes.pop()
    while lexemes and lexemes[0].kind in ("seq", "punct"):
        lexemes.pop(0)
    if lexemes and all(t.kind == "node" or _is(t, "and") or t.kind == "punct" for t in lexemes):
        raise Refusal(f"what should I do with {' '.join(t.text for t in lexemes)!r}? Nothing was planned")
    if not lexemes:
        raise Refusal("there is nothing to do in that request")
    steps = _Request(lexemes, lx).parse()
    return Parsed(steps=steps, corrections=corrections, reason=reason)


_OVERVIEW = {"trouble", "problems", "problem", "issues", "issue", "wrong", "summary", "overview", "ok", "okay",
             "fine", "healthy", "health", "good", "alright"}
_OVERVIEW_GLUE = {"we", "anywhere", "everything", "all", "any", "in", "of", "there", "cluster", "fleet", "quick",
                  "something", "anything", "doing", "going", "looking", "on", "with", "us", "me", "our", "nodes", "is",
                  "are", "how", "what", "the", "a", "give", "show", "tell", "so", "far", "now", "right", "please",
                  "currently", "overall", "general", "whole", "entire"}


def _overview(lexemes: list[Lexeme]) -> bool:
    """A question about the cluster as a whole, naming nothing in it: 'are we ok?', 'any problems?', 'how is
    the cluster doing', 'a quick health summary of everything'.  The answer lists every node."""
    words = [t for t in lexemes if t.kind not in ("seq", "punct")]
    if not words or len(words) > 12:
        return False
    flat = [w for t in words for w in t.words]
    asks = set(flat) & _OVERVIEW or ({"cluster", "fleet", "everything"} & set(flat)
                                     and {"doing", "going", "looking", "status", "state"} & set(flat))
    if asks and not (set(flat) & (_OVERVIEW - {"ok", "okay", "fine", "good", "alright"})
                     or set(flat) & {"are", "is", "how", "any", "anywhere", "everything", "status", "state"}):
        return False      # "ok", "all good": an acknowledgement, not a question
    return bool(asks) and all(w in _OVERVIEW or w in _OVERVIEW_GLUE or w in ("health", "status", "show", "give", "tell")
                              for w in flat) and not any(t.kind in ("node", "proc", "metric", "sup", "cmp", "num",
                                                                    "group", "unit") for t in words)


class _Request:
    def __init__(self, lexemes: list[Lexeme], lx: Lexicon) -> None:
        self.c = _Clause(lexemes)
        self.lx = lx
        self._prev_step: Step | None = None
        self._implied_all = False
        self._implied_cond: Has | None = None
        self._fronted_target = False
        self._its = False
        self._cond_node: str | None = None
        self._last_metric: str | None = None

    def parse(self) -> list[Step]:
        c = self.c
        steps: list[Step] = []
        while True:
            start = c.i
            prev = steps[-1] if steps else None
            self._prev_step = prev
            step = self.clause(prev)
            step.words = " ".join(t.text for t in c.x[start:c.i])
            if prev is not None and prev.mutating and _is(c.x[start], "on", "at", "in") and step.verb == prev.verb \
                    and step.processes == prev.processes and not (step.pronoun or prev.pronoun) \
                    and isinstance(prev.target, Ids) and isinstance(step.target, Ids):
                # "stop the worker on 7 and also on 12": one step on both ("..., then on 12" stays two)
                if not any(_is(t, "then", "after", "afterwards", "next", "followed") or t.kind == "seq"
                           for t in c.x[start - 3:start]):
                    prev.target = Ids(list(dict.fromkeys([*prev.target.ids, *step.target.ids])))
                    prev.words += " " + step.words
                    if c.done():
                        break
                    if not self.joiner():
                        raise _refuse_word(c.peek(), f"after {step.words!r}")  # type: ignore[arg-type]
                    continue
            steps.append(step)
            if c.done():
                break
            if not self.joiner():
                raise _refuse_word(c.peek(), f"after {step.words!r}")  # type: ignore[arg-type]
            if c.done():
                raise Refusal(f"the request ends after {c.x[-1].text!r}; nothing was planned")
        if any(s.mutating for s in steps):
            first_mut = next(k for k, s in enumerate(steps) if s.mutating)
            if any(not s.mutating for s in steps[first_mut:]):
                raise Refusal("a question after an action would be answered before the action runs; ask it "
                              "after the plan has run. Nothing was planned")
        return steps

    def joiner(self) -> bool:
        """A step boundary: then / and then / after that / , / ; / and (before a verb) / also."""
        c = self.c
        found = False
        while True:
            t = c.peek()
            if t is None:
                return found
            if t.kind == "seq" or _is(t, "then", "afterwards", "also", "next") or (t.kind == "punct"):
                c.i += 1
                found = True
                continue
            if _is(t, "and") and self._clause_start(c.peek(1)):
                c.i += 1
                found = True
                continue
            if _is(t, "after") and _is(c.peek(1), "that"):
                c.i += 2
                found = True
                continue
            if _is(t, "followed") and _is(c.peek(1), "by"):    # "restart logger on na followed by nb"
                c.i += 2
                found = True
                continue
            return found

    def _clause_start(self, t: Lexeme | None) -> bool:
        return t is not None and (t.kind in ("verb", "proc", "seq") or _is(t, "then", "it", "also", "after", "finally",
                                                                           "lastly"))

    # ---- one clause -----------------------------------------------------------------------

    def clause(self, prev: Step | None) -> Step:
        c = self.c
        while _is(c.peek(), "first", "firstly", "finally", "lastly") and c.kind_at(1) == "verb":
            c.i += 1
        t = c.peek()
        assert t is not None
        if prev is not None and (_is(t, *_EXCEPT1, "but", "not", "other", "apart") or t.kind == "punct"):
            raise Refusal(f"{t.text!r} starts a new step here, so it can't exclude anything from the step "
                          f"before; put the exclusion in the same sentence. Nothing was planned")
        if prev is not None and prev.mutating and (_is(t, "same") or (_is(t, "do") and _is(c.peek(1), "same"))):
            c.i += 1 if _is(t, "same") else 2      # "then do the same on nb"
            step = Step(verb=prev.verb, processes=list(prev.processes), all_processes=prev.all_processes)
            step.target = self.target_opt()
            if step.target is None:
                raise Clarification("the same where? Name the nodes", [])
            return step
        if _is(t, *_NEG) or (_is(t, "do") and _is(c.peek(1), *_NEG)):
            raise Refusal(f"the request is negated ({t.text!r} ...): I plan nothing for it")
        if t.kind == "verb" and t.value in MUTATING:
            if t.words[0] in ("reboot", "shutdown", "power") and (c.kind_at(1) in ("node", "sup", "nnoun", "ord")
                                                                 or _is(c.peek(1), *_ALLWORDS)):
                raise Refusal(f"{t.text} a whole node is not something the planner does; it restarts, stops "
                              "and starts supervised processes. Nothing was planned")
            return self.action(c.take().value)
        if t.kind == "verb" and t.value == "ensure":
            return self.ensure(c.take())
        if _is(t, "if") and c.kind_at(1) == "node":
            return self.conditional()
        if _is(t, "if") and prev is not None and prev.verb == "status" and prev.processes and prev.asked \
                and prev.target is not None and (_is(c.peek(1), "not", "yes") or c.kind_at(1) in ("punct", "seq", "verb")
                                                 or (_is(c.peek(1), "it", "they") and _is(c.peek(2), "is", "are", "does", "do"))):
            # "is nb's worker running? if not, start it" / "is it stopped? if it is (so), start it": where the
            # answer is the one named
            c.i += 1
            yes = True
            if c.word("it", "they"):
                c.word("is", "are", "does", "do")
            if c.word("not"):
                yes = False
            c.word("yes")
            c.word("running", "up", "stopped", "down")
            stopped = prev.asked == "stopped"
            running = yes != stopped
            if c.kind_at() in ("punct", "seq"):
                c.i += 1
            c.word("then", "please")
            v = c.peek()
            if v is None or v.kind != "verb" or v.value not in MUTATING:
                raise Refusal(f"after 'if {c.x[c.i - 1].text}' I expected an action (restart, stop or start); "
                              "nothing was planned")
            step = self.action(c.take().value, prev=prev)
            if step.pronoun and not step.processes:
                step.processes, step.pronoun = list(prev.processes), False
            if step.processes != prev.processes or not (step.target is None or isinstance(step.target, Same)
                                                        or step.target == prev.target):
                raise Refusal("'if not' answers the question about "
                              f"{' and '.join(prev.processes)}: the action must be on it, where it was asked "
                              "('is the worker running on nb? if not, start it'); nothing was planned")
            step.target = Filter(prev.target, Has("$it", running=True) if running else Has("$it", stopped=True))
            step.ensure = True
            return step
        if t.kind == "verb" and t.value in ("status", "logs"):
            return self.read_process(c.take().value)
        if prev is not None and prev.mutating and (t.kind == "proc" or _is(t, "it", "them", *_ALLWORDS, "on", "at",
                                                                          "in", "others", "rest", "there",
                                                                          "everywhere")
                                                   or t.kind in ("node", "sup", "nnoun")):
            return self.action(prev.verb, prev=prev)   # "..., then the others", "and worker on nb"
        fronted = self._fronted()
        if fronted is not None:
            return fronted
        return self.question()

    def _fronted(self) -> Step | None:
        """'logger restart on nb' (the process first), 'on nb, restart logger' / 'nb: restart logger'."""
        c = self.c
        j = c.i
        end = next((k for k in range(c.i, len(c.x)) if c.x[k].kind == "seq" or _is(c.x[k], "then")), len(c.x))
        verb_at = next((k for k in range(c.i, end) if c.x[k].kind == "verb"), None)
        if verb_at is None or c.x[verb_at].value not in MUTATING or verb_at == c.i:
            return None
        t = c.peek()
        if t is not None and t.kind == "proc":
            step = Step(verb=c.x[verb_at].value)
            self.objects(step)
            target = None
            if c.i != verb_at and _is(c.peek(), "on", "at", "in"):    # "logger on nb - restart"
                self._prep()
                target = self.texpr()
                if c.kind_at() == "punct":
                    c.i += 1
            if c.i != verb_at:
                c.i = j
                return None
            c.i += 1
            step.target = self.target_opt()
            if target is not None:
                if step.target is not None:
                    raise Refusal("the request names its nodes twice; nothing was planned")
                step.target = target
            return step
        if t is not None and (t.kind == "node" or _is(t, "on", "at", "in", "for", "across")):
            self._prep()
            target = self.texpr()
            if c.kind_at() == "punct":
                c.i += 1
            if c.i != verb_at:
                c.i = j
                return None
            step = self.action(c.take().value)
            if step.target is not None and not isinstance(step.target, Same):
                raise Refusal("the request names its nodes twice; nothing was planned")
            step.target = target
            self._fronted_target = True      # "on nc: stop the worker, bounce the logger": every step on nc
            return step
        return None

    def action(self, verb: str, prev: Step | None = None) -> Step:
        c = self.c
        step = Step(verb=verb)
        self._implied_all = False
        self.objects(step)
        if not (step.processes or step.all_processes or step.pronoun) and prev is not None:
            step.processes = list(prev.processes)
            step.all_processes = prev.all_processes
        t = c.peek()
        if t is not None and t.kind == "node" and not _is(c.peek(-1) if c.i else None, "on") and \
                not (step.processes or step.all_processes or step.pronoun):
            raise Clarification(f"what should I {verb} on {t.value}? Name a process (restarting a whole node is "
                                "not something the planner does)", self._procs_of([t.value]))
        if c.kind_at() == "punct" and _is(c.peek(1), "on", "at", "in", "across"):
            c.i += 1   # "restart logger, on nb"
        if _is(c.peek(), "back") and _is(c.peek(1), "on", "at", "in"):
            c.i += 1   # "then start it back on a only"
        step.target = self.target_opt()
        if step.target is None and step.pronoun and prev is None and self._prev_step is not None:
            step.target = Same()   # "stop worker on nb then start it": on the same nodes
        if step.target is None and self._cond_node is not None:
            step.target = Ids([self._cond_node])   # "if nb is hotter than 55, restart its worker"
        if step.target is None and (self._fronted_target or self._its) and self._prev_step is not None:
            step.target = Same()   # "on nc: stop X, restart Y"; "how hot is nc? also restart its worker"
        if self._its and step.target is None:
            raise Clarification(f"whose {', '.join(step.processes) or 'process'}? Name the node", [])
        self._its = False
        if step.target is None and self._implied_all:
            step.target = All()
        if self._implied_cond is not None:
            step.target = Filter(step.target if step.target is not None else All(), self._implied_cond)
            self._implied_cond = None
        self._lines(step)
        return step

    def conditional(self) -> Step:
        """'if nb is hotter than 55, restart its worker': the action on that node, filtered by the condition
        (checked on the live view when planned, and again as the step's selector when it runs).  Only a
        condition on the node the action is on; anything else is refused."""
        c = self.c
        c.word("if")
        node = c.take()
        j = c.i
        cond = self.post()
        if not isinstance(cond, (Cond, list)):
            c.i = j
            t = c.peek()
            raise _refuse_word(t, f"after 'if {node.text}': I only act on a condition on a metric of the node "
                                  "('if nb is hotter than 55, restart its worker')") if t else \
                Refusal("the condition has no action; nothing was planned")
        if c.kind_at() == "punct" or c.kind_at() == "seq":
            c.i += 1
        c.word("then")
        v = c.peek()
        if v is None or v.kind != "verb" or v.value not in MUTATING:
            raise Refusal(f"after the condition on {node.text} I expected an action (restart, stop or start); "
                          "nothing was planned")
        self._cond_node = str(node.value)
        try:
            step = self.action(c.take().value)
        finally:
            self._cond_node = None
        if step.target is None or isinstance(step.target, Same):
            step.target = Ids([str(node.value)])
        if not (isinstance(step.target, Ids) and step.target.ids == [node.value]):
            raise Refusal(f"the condition is about {node.text}, so the action must be on {node.text} alone; "
                          "nothing was planned")
        conds = cond if isinstance(cond, list) else [cond]
        target: Expr = step.target
        for one in conds:
            target = Filter(target, one)
        step.target = target
        return step

    def ensure(self, verb: Lexeme) -> Step:
        """'make sure the logger is running on nb': start it where it is not running (stop it where it runs,
        for 'is stopped'); the state word is required, and the target is the nodes named that need it."""
        c = self.c
        c.word("that")
        step = Step(verb="start", ensure=True)
        self.objects(step)
        if step.all_processes:
            raise Clarification(f"{verb.text} which processes are running? Name them",
                                sorted(set(self.lx.processes.values())))
        if not step.processes:
            t = c.peek()
            raise _refuse_word(t, f"after {verb.text!r}: make sure which process is running?") if t else \
                Refusal(f"{verb.text} what? Name a process; nothing was planned")
        c.word("is", "are", "keeps", "stays", "gets", "get")
        c.word("been")
        t = c.peek()
        if t is not None and t.kind == "verb" and t.value == "restart" or _is(t, "restarted", "bounced", "recycled"):
            c.i += 1              # "please ensure the worker is restarted on ...": a restart
            step.verb, step.ensure = "restart", False
            target = self.target_opt()
            if target is None:
                raise Clarification("restart it where? Name the nodes", [])
            step.target = target
            return step
        if c.word("running", "up", "started", "alive", "going", "on"):
            state = Has("$it", stopped=True)
        elif c.word("stopped", "down", "off", "dead") or (c.word("not") and c.word("running")):
            step.verb, state = "stop", Has("$it", running=True)
        else:
            t = c.peek()
            raise _refuse_word(t, f"after {verb.text!r}: say 'is running' or 'is stopped'") if t else \
                Refusal(f"{verb.text} it is what? Say 'is running' or 'is stopped'; nothing was planned")
        c.word("again")
        target = self.target_opt()
        step.target = Filter(target if target is not None else All(), state)
        return step

    def objects(self, step: Step) -> None:
        c = self.c
        if c.word("everything") or (_is(c.peek(), *_ALLWORDS, "both") and _is(c.peek(1), "processes", "process", "procs",
                                                                        "services", "service", "daemons", "jobs")):
            if not _is(c.peek(-1), "everything"):
                c.i += 2
            step.all_processes = True
            return
        if _is(c.peek(), "all") and (c.peek(1) is None or _is(c.peek(1), "on", "at", "in", "across")):
            c.i += 1
            step.all_processes = True
            return
        if c.word("it", "them", "stuff", "things"):
            step.pronoun = True        # "rst stuff on edge-2": which process is asked
            return
        if _is(c.peek(), "its", "their") and c.kind_at(1) == "proc":
            c.i += 1      # "restart its worker": the node of the step before (or of the condition)
            self._its = True
        if c.kind_at() == "pnoun" and c.kind_at(1) != "proc" and c.value_at() is not None:
            c.i += 1    # "restart the process on nb": which one is asked, as for "it"
            step.pronoun = True
            return
        if _is(c.peek(), "any", "all", "every", "each") and c.kind_at(1) == "proc" and _is(c.peek(2), "that", "which") \
                and _is(c.peek(3), "is", "are", "has", "have"):
            j = c.i
            proc = c.x[c.i + 1].value
            c.i += 4
            c.word("been")
            if c.word("down", "stopped", "dead", "crashed", "died", "failed", "exited") or \
                    (c.word("not") and c.word("running")):
                step.processes.append(proc)       # "bring up any worker that's down": wherever it is
                self._implied_cond = Has("$it", stopped=True)
                return
            if c.word("running", "up"):
                step.processes.append(proc)
                self._implied_cond = Has("$it", running=True)
                return
            c.i = j
        if _is(c.peek(), "all", "every", "each") and c.kind_at(1) == "proc":
            c.i += 1
            self._implied_all = True   # "restart all loggers": the logger on every node
        c.word("both")
        while True:
            c.kind("pnoun") if c.kind_at() == "pnoun" and \
                c.kind_at(1) == "proc" else None
            p = c.kind("proc")
            if p is None:
                break
            step.processes.append(p.value)
            if c.kind_at() == "pnoun" and not c.value_at():
                c.i += 1
            if _is(c.peek(), "or") and c.kind_at(1) == "proc":
                raise Clarification("which process: " + " or ".join([p.value, c.value_at(1)]) + "?",
                                    [p.value, c.value_at(1)])
            if (_is(c.peek(), "and", "plus") or (c.kind_at() == "punct")) and \
                    c.kind_at(1) == "proc":
                c.i += 1
                continue
            if (_is(c.peek(), "and", ",") or (c.kind_at() == "punct")) \
                    and c.kind_at(1) == "pnoun" and c.kind_at(2) == "proc":
                c.i += 1
                continue
            break
        step.processes = list(dict.fromkeys(step.processes))

    def _lines(self, step: Step) -> None:
        c = self.c
        # "[the] last N lines" at the end of a logs clause
        j = c.i
        if c.i and _is(c.x[c.i - 1], "log", "logs") and c.word("lines", "line"):
            c.word("of", "from")          # "the logger log lines from node-b"
            return
        if c.word("log") and c.word("lines", "line"):     # "the (recent) log lines": the default count
            c.word("of", "from")
            return
        c.i = j
        recent = c.word("last", "recent", "latest")
        if recent and c.word("log") and c.word("lines", "line"):     # "the recent log lines": the default count
            c.word("of", "from")
            return
        c.i = j
        c.word("last")
        n = c.kind("num")
        if n is None and c.kind_at() == "count" and c.value_at() < 0 and _is(c.peek(1), "lines", "log"):
            c.i += 1
            n = Lexeme("num", 10, ("10",), -1)     # "the last few lines": ten
        if n is not None:
            c.word("log", "logs")        # "last 10 log lines"
        if n is not None and c.word("lines", "line"):
            c.word("of", "from")
            step.lines = int(n.value)
            return
        c.i = j

    def target_opt(self) -> Expr | None:
        c = self.c
        t = c.peek()
        if t is None or self._at_boundary():
            return None
        if _is(t, "wherever") or (_is(t, "where") and c.kind_at(1) not in (None, "node")):
            if _is(t, "wherever"):
                c.i += 1
            e = self.posts(All())
            if isinstance(e, All):
                raise _refuse_word(t)
            while self._except_word(e):      # "wherever it isn't running, but skip edge-5"
                c.word("for")
                self._prep()
                e = Except(e, self.union())
            return e
        if c.word("not"):  # "restart logger not on na"
            self._prep()
            return Except(All(), self.union())
        if _is(t, "except") or (_is(t, "but") and _is(c.peek(1), "not")) or \
                (_is(t, "other") and _is(c.peek(1), "than")):
            c.i += 2 if not _is(t, "except") else 1
            c.word("for")
            self._prep()
            return Except(All(), self.union())
        self._prep()
        return self.texpr()

    def _prep(self) -> bool:
        return self.c.word("on", "at", "in", "across", "from", "for", "onto", "within", "of", "over")

    def _at_boundary(self) -> bool:
        c = self.c
        t = c.peek()
        return t is None or t.kind == "seq" or _is(t, "then", "also") or \
            (_is(t, "and") and _is(c.peek(1), "then")) or (t.kind == "punct" and _is(c.peek(1), "then")) or \
            (t.kind == "punct" and c.kind_at(1) == "verb" and c.value_at(1) in MUTATING)   # "stop X, bounce Y"

    # ---- target expressions ---------------------------------------------------------------

    def texpr(self) -> Expr:
        c = self.c
        e = self.union()
        while True:
            j = c.i
            if self._except_word(e):
                leave = _is(c.x[c.i - 1], "leave")
                c.word("for")
                self._prep()
                e = Except(e, self.union())
                if leave and not c.word("alone", "out"):     # "but leave nb alone"
                    raise _refuse_word(c.peek() or c.x[c.i - 1], "after 'leave …' (say 'leave nb alone')")
                continue
            c.i = j
            return e

    def _except_word(self, e: Expr | None = None) -> bool:
        c = self.c
        t = c.peek()
        if t is None:
            return False
        if t.kind == "punct" and _is(c.peek(1), *_EXCEPT1, "other", "apart", "excluding", "but"):
            c.i += 1   # "all nodes, except na"
            if self._except_word(e):
                return True
            c.i -= 1
            return False
        if _is(t, *_EXCEPT1):
            c.i += 1
            return True
        if _is(t, "but") and _is(c.peek(1), "not"):
            c.i += 2
            return True
        if _is(t, "but", "and") and _is(c.peek(1), *_EXCEPT1):    # "but skip n-03", "except nb and except nc"
            c.i += 2
            return True
        if _is(t, "other") and _is(c.peek(1), "than"):
            c.i += 2
            return True
        if _is(t, "without") and c.kind_at(1) == "node":   # "all nodes without nb" ("without worker" is not this)
            c.i += 1
            return True
        if (_is(t, "leave") or ((_is(t, "but") or t.kind == "punct") and _is(c.peek(1), "leave"))) \
                and any(_is(x, "alone", "out") for x in c.x[c.i:c.i + 8]):
            c.i += 1 if _is(t, "leave") else 2    # "..., leave nb alone", "but leave nb out"
            return True
        if _is(t, "apart") and _is(c.peek(1), "from"):
            c.i += 2
            return True
        if (t.kind == "punct" or _is(t, "and")) and _is(c.peek(1), "not"):
            c.i += 2
            return True
        if (t.kind == "punct") and _is(c.peek(1), "but") and _is(c.peek(2), "not"):
            c.i += 3
            return True
        if _is(t, "but") and (self._broad_before() or (e is not None and is_broad(e))):
            c.i += 1
            return True
        return False

    def _broad_before(self) -> bool:
        c = self.c
        prev = c.x[c.i - 1] if c.i else None
        return _is(prev, "everywhere", "anywhere", "everything", "all", "nodes", "hosts", "servers", "machines",
                   "boxes")

    def union(self) -> Expr:
        c = self.c
        parts = [self.term()]
        while True:
            t = c.peek()
            if t is None:
                break
            if _is(t, "or"):
                raise Clarification("'or' leaves the choice to me: which one do you mean?", [])
            if t.kind == "node" and isinstance(parts[-1], Ids):   # "on na nc"
                parts.append(self.term())
                continue
            joined = (_is(t, "and", "plus") or (t.kind == "punct" and t.value in (",", "&")))
            if not joined:
                break
            nxt = c.peek(1)
            if t.kind == "punct" and _is(nxt, "and"):    # "na, and after that ...": look past the "and"
                nxt = c.peek(2)
            if nxt is None or nxt.kind in ("verb", "proc", "seq") or _is(nxt, "then", "not", "also", "but", "after", "leave",
                                                                         "its", "their",
                                                                         "first", "finally", "same", "do", "other",
                                                                         "apart", *_EXCEPT1):
                break
            if _is(t, "and") and _is(nxt, "also"):
                break
            c.i += 1
            if _is(c.peek(), "and"):   # "na, nb, and nc"
                c.i += 1
            self._prep()               # "the coolest node and on nb"
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Union(parts)

    def term(self) -> Expr:
        c = self.c
        t = c.peek()
        if t is None:
            raise Refusal("the request ends where a target was expected; nothing was planned")
        if _is(t, "anything", "anyone") and (_is(c.peek(1), *_ANY_CONDITION) or c.kind_at(1) == "cmp"):
            c.i += 1              # "kick the logger on anything running above 60 degrees": every node that does
            e = self.posts(All())
            if isinstance(e, All):
                raise _refuse_word(t)
            return e
        # all / every / everywhere
        if t.kind == "word" and t.value in _ALLWORDS | {"everything", "whole", "entire", "anywhere", "any"}:
            if _is(t, "anywhere"):
                c.i += 1
                nxt = c.peek()
                if not (_is(nxt, "but", "except") or (_is(nxt, "other") and _is(c.peek(1), "than"))):
                    raise Clarification("'anywhere' leaves the choice to me: which node?", [])
                return All()
            if _is(t, "any") and not (_is(c.peek(1), *NODE_NOUNS) and (_is(c.peek(2), *_ANY_CONDITION)
                                                                         or c.kind_at(2) == "cmp")):
                # "any node" is a choice left to me; "any node running above 70" is every one that does
                raise Clarification("'any' leaves the choice to me: which node?", [])
            c.i += 1
            if t.value in ("whole", "entire"):
                if not c.word("cluster"):
                    raise _refuse_word(t)
                return All()
            if t.value == "everywhere" and c.word("else"):
                return Others()
            c.word("of")
            if _is(c.peek(), "other", "others", "rest", "remaining") and not _is(c.peek(1), "than"):
                c.i += 1
                c.kind("nnoun")
                return Others()
            n = c.peek()
            if n is not None and n.kind == "sup":  # "all the hottest" is not a thing
                raise _refuse_word(n, "after 'all'")
            if _is(c.peek(), "offline"):
                raise Refusal("actions run on online nodes only; nothing was planned")
            c.word("online")
            group = c.kind("group")
            c.kind("nnoun")
            if _is(c.peek(), "that", "which") and _is(c.peek(1), "are", "is") and _is(c.peek(2), "online", "up"):
                c.i += 3          # "all nodes that are online": actions run on online nodes anyway
            c.word("cluster", "fleet")
            c.word("them")
            self._in_cluster()
            return self.posts(Filter(All(), Group(group.value)) if group is not None else All())
        if _is(t, "cluster", "fleet"):
            c.i += 1
            return All()
        if _is(t, "both") and c.kind_at(1) in ("node", "nnoun"):
            c.i += 1
            c.kind("nnoun")
            e = self.union()
            if not (isinstance(e, Union) and len(e.parts) == 2):
                raise Clarification("'both' should name two nodes: which two?", [])
            return e
        if _is(t, "whichever", "whatever") and c.kind_at(1) == "nnoun":
            c.i += 1
            return self.term()
        if t.kind == "word" and t.value in COMPARATIVES and (_is(c.peek(1), "of", "among") or (
                c.kind_at(1) == "nnoun" and _is(c.peek(2), "of", "among"))):
            c.i += 1              # "the hotter of na and nc", "the cooler node of nb and nc"
            c.kind("nnoun")
            c.i += 1
            metric, order = COMPARATIVES[str(t.value)]
            among = self.union()
            if not isinstance(among, Union):
                raise Clarification(f"the {t.text} of which nodes? Name two or more", [])
            return Rank(among, metric, order)
        if _is(t, "whichever", "whatever") and _is(c.peek(1), "of"):      # "whichever of na and nb is hotter"
            c.i += 2
            inner = self.union()
            c.word("is", "are", "runs", "running")
            cmp_word = c.peek()
            if cmp_word is None or cmp_word.kind != "word" or cmp_word.value not in COMPARATIVES:
                raise _refuse_word(cmp_word or t, "(say e.g. 'whichever of na and nb is hotter')")
            c.i += 1
            metric, order = COMPARATIVES[str(cmp_word.value)]
            return Rank(inner, metric, order)
        if t.kind == "adj" and c.kind_at(1) == "nnoun":     # "the hot nodes", "the busy servers": how hot?
            raise Clarification(f"which nodes count as {t.text}? Say e.g. 'the 2 {_ADJ_SUP.get(t.text, 'hottest')} "
                                f"nodes' or give a threshold ('above 60 degrees')", [])
        if _is(t, "one", "ones") and (_is(c.peek(1), "using", "running", "with", "that", "which", "whose")
                                      or c.kind_at(1) in ("sup", "cmp")):
            c.i += 1              # "all nodes except the one using the most memory"
            e = self.posts(All())
            if isinstance(e, All):
                raise _refuse_word(t, "where a node or a set of nodes was expected")
            return e
        if _is(t, "one", "ones") and _is(c.peek(1), "on", "at") and c.kind_at(2) == "node":
            c.i += 2              # "except the one on nb"
            return Ids([c.take().value])
        if _is(t, "where", "wherever") and c.kind_at(1) not in (None, "node"):   # "except where the worker is stopped"
            c.i += 1
            e = self.posts(All())
            if isinstance(e, All):
                raise _refuse_word(t)
            return e
        if _is(t, "whichever", "whatever"):     # "whichever is hottest", "whichever one runs coolest"
            c.i += 1
            c.word("one")
            e = self.posts(All())
            if isinstance(e, All):
                raise _refuse_word(t)
            return e
        if _is(t, "others", "rest"):
            c.i += 1
            c.word("of")
            c.word("them")
            c.kind("nnoun")
            return Others()
        if _is(t, "other", "remaining") and c.kind_at(1) == "nnoun":
            c.i += 2
            return Others()
        if _is(t, "there") or (_is(t, "it", "them") and self._target_pronoun_ok()):
            c.i += 1
            return Same()
        if _is(t, "one") and _is(c.peek(1), "of") and (c.kind_at(2) == "nnoun" or _is(c.peek(2), "them", "those")):
            raise Clarification("'one of the nodes' leaves the choice to me: which node?", [])
        if _is(t, "one") and _is(c.peek(1), "called", "named") and c.kind_at(2) == "node":
            c.i += 2      # "except the one called b"
            return Ids([c.take().value])
        if _is(t, "that") and _is(c.peek(1), "same") and c.kind_at(2) == "nnoun":
            c.i += 1              # "on that same node"
            t = c.x[c.i]
        if _is(t, "same") or (_is(t, "that") and c.kind_at(1) == "nnoun"):
            c.i += 1
            if not c.kind("nnoun"):
                raise _refuse_word(t)
            return Same()
        if _is(t, "those", "these") and self._prev_step is not None and self._prev_step.target is not None and \
                (c.kind_at(1) in ("count", "num", "nnoun", None) or self._boundary_at_safe(c.i + 1)
                 or _is(c.peek(1), *_EXCEPT1, "but", "other")):
            c.i += 1              # "which 3 nodes are hottest? restart the logger on those three": the same nodes
            if c.kind_at() in ("count", "num"):
                c.i += 1
            c.kind("nnoun")
            return Same()
        if _is(t, "those", "ones", "these"):
            c.i += 1
            c.kind("nnoun")
            e = self.posts(All())
            if isinstance(e, All):
                raise Clarification(f"which nodes do you mean by {t.text!r}?", [])
            return e
        # ranked: [N|ORD|top N] SUPERLATIVE [N] [node] post*
        count, ordinal = 1, None
        j = c.i
        topped = _is(t, "top", "bottom")
        if c.word("top", "bottom"):
            bottom = c.x[c.i - 1].words[0] == "bottom"
            n = c.kind("num") or (c.take() if c.kind_at() == "count" and c.value_at() > 0 else None)
            count = int(n.value) if n else 1
            if c.kind_at() == "nnoun" and _is(c.peek(1), "by") and c.kind_at(2) == "metric":
                c.i += 2          # "the top 2 nodes by cpu": highest first; "the bottom 2": lowest
                m = c.take()
                metric, order = str(m.value), "asc" if bottom else "desc"
                if metric == "memory_percent":
                    metric, order = "free_memory_percent", "desc" if bottom else "asc"
                return Rank(self.posts(All(), allow_rank=False), metric, order, count)
            if bottom:
                raise _refuse_word(c.peek() or t, "after 'bottom' (say e.g. 'the bottom 2 nodes by cpu')")
        elif t.kind == "ord":
            ordinal = int(c.take().value)
            more: list[int] = []
            while (_is(c.peek(), "and") or c.kind_at() == "punct") and c.kind_at(1) == "ord":
                c.i += 1     # "the second and third hottest"
                more.append(int(c.take().value))
            if more:
                s = c.kind("sup")
                if s is None:
                    raise _refuse_word(c.peek() or t, "after the ordinals")
                c.kind("nnoun")
                base = self.posts(All(), allow_rank=False)
                j = c.i
                excluded = self._except_word(All())
                c.i = j
                if excluded:   # skip and take the next, or leave out? Not guessed
                    raise Clarification("an exclusion after several ranked nodes is ambiguous: name the nodes", [])
                return Union([Rank(base, s.value[0], s.value[1], 1, o) for o in [ordinal, *more]])
        elif t.kind == "num" and c.kind_at(1) == "sup":
            count = int(c.take().value)
        elif t.kind == "count" and t.value > 0 and c.kind_at(1) == "sup":
            count = int(c.take().value)
        s = c.kind("sup")
        if s is not None and ordinal is None and count == 1 and _is(c.peek(), "and") and c.kind_at(1) == "sup" \
                and (c.kind_at(2) == "nnoun" or _is(c.peek(2), "ones")):
            s2 = c.x[c.i + 1]          # "the coolest and hottest nodes": one of each
            c.i += 3
            base = self.posts(All(), allow_rank=False)
            return Union([Rank(base, s.value[0], s.value[1]), Rank(base, s2.value[0], s2.value[1])])
        if s is not None:
            n = c.kind("num")
            if n is None and c.kind_at() == "count" and c.value_at() > 0:
                n = c.take()
            if n is not None:
                count = int(n.value)
            c.word("online")
            group = c.kind("group")        # "the hottest edge node"
            noun = c.kind("nnoun")
            if noun is None:
                noun = c.kind("word") if _is(c.peek(), "one", "ones") else None
            plural = noun is not None and (noun.value is True or noun.words[0] == "ones")
            self._in_cluster()   # "the hottest node in the cluster"
            if c.word("of", "among"):     # "the hottest of the nodes", "the coolest among na and nb"
                c.word("all")
                if c.kind("nnoun") is None:
                    inner = self.union()
                    base = self.posts(inner, allow_rank=False)
                    return Rank(base, s.value[0], s.value[1], count, ordinal)
            if plural and n is None and ordinal is None and not topped and count == 1 and c.i - j <= 3 + (group is not None):
                raise Clarification(f"how many of the {s.text} nodes? Say e.g. 'the 2 {s.text} nodes'", [])
            key, order = s.value
            if _is(c.peek(), "by", "in") and c.kind_at(1) == "metric" and key in ("load_1m", "cpu_percent"):
                c.i += 1          # "the three busiest nodes by cpu": busiest in that metric
                m = c.take()
                key, order = str(m.value), order
                if key == "memory_percent":
                    key, order = "free_memory_percent", "asc" if order == "desc" else "desc"
            base = self.posts(Filter(All(), Group(group.value)) if group is not None else All(), allow_rank=False)
            return Rank(base, key, order, count, ordinal)
        c.i = j
        if t.kind == "count" and t.value < 0 and _is(c.peek(1), "of") and (c.kind_at(2) == "nnoun" or
                                                                         _is(c.peek(2), "them", "those")):
            raise Clarification(f"which nodes? '{t.text} of the nodes' leaves the choice to me: name them, or say "
                                "e.g. 'the 2 coolest nodes'", [])
        if t.kind in ("num", "count") and c.kind_at(1) == "nnoun":
            c.i += 2
            e = self.posts(All())
            if isinstance(e, Rank):
                if t.kind == "num" or t.value > 0:    # "the 2 nodes" / "the two nodes with the most cpu"
                    e.count = int(t.value)
                    return e
            raise Clarification(f"which {t.text} nodes? Name them, or say e.g. 'the {t.text} coolest nodes'", [])
        if t.kind == "ord" and c.kind_at(1) == "nnoun":
            raise Clarification(f"the {t.text} node by what? Say e.g. 'the {t.text} hottest node'", [])
        if t.kind == "group":     # "the edge nodes", "the hottest edge node" comes through the rank above
            c.i += 1
            noun = c.kind("nnoun")
            e = self.posts(Filter(All(), Group(t.value)))
            if noun is not None and noun.value is False and not isinstance(e, Rank):
                raise Clarification(f"which {t.text} {noun.text}? Name it, or say 'the {t.text} {noun.text}s' "
                                    f"or e.g. 'the hottest {t.text} {noun.text}'", [])     # "the edge node": one of several
            return e
        # node [ID] post* | ID [node]
        if t.kind == "nnoun":
            c.i += 1
            if _is(c.peek(), "called", "named") and c.kind_at(1) == "node":   # "the server called nc"
                c.i += 1
            idl = c.kind("node")
            if idl is not None:
                return Ids([idl.value])
            nxt = c.peek()
            if nxt is not None and nxt.kind in ("word", "filler") and len(nxt.text) == 1 and nxt.text.isalpha() \
                    and nxt.text not in ("a",):
                raise Refusal(f"there is no {t.text} {nxt.text!r} in the cluster; nothing was planned")
            if c.kind_at() == "num" and not (c.kind_at(1) in ("unit", "sup") or _is(c.peek(1), "or", "and")):
                raise Refusal(f"there is no {t.text} {c.peek().text!r} in the cluster; nothing was "  # type: ignore[union-attr]
                              "planned")
            e = self.posts(All())
            j = c.i
            excluded = isinstance(e, All) and t.value and self._except_word(e)
            c.i = j
            if excluded:       # "the nodes other than the hottest one": all of them, less that
                return e
            if isinstance(e, All):
                raise Clarification(f"which node{'s' if t.value else ''}? Name {'them' if t.value else 'it'}, or "
                                    "say 'all nodes' or e.g. 'the coolest node'", [])
            return e
        if t.kind == "node":
            c.i += 1
            c.kind("nnoun")
            return Ids([t.value])
        if t.kind in ("cmp",):
            return self.posts(All())
        raise _refuse_word(t, "where a node or a set of nodes was expected")

    def _in_cluster(self) -> None:
        c = self.c
        if _is(c.peek(), "in", "of", "across", "within") and _is(c.peek(1), "cluster", "fleet"):
            c.i += 2

    def _target_pronoun_ok(self) -> bool:
        c = self.c
        prev = c.x[c.i - 1] if c.i else None
        return _is(prev, "on", "at", "in", "from")

    def posts(self, base: Expr, *, allow_rank: bool = True) -> Expr:
        """Filters after a node noun: comparisons, 'running X', 'that has it', 'which is hottest'."""
        c = self.c
        e = base
        while True:
            j = c.i
            if _is(c.peek(), "and", "but") and _is(c.peek(1), "not", "no") and c.kind_at(2) == "proc" \
                    and not (c.kind_at(3) == "node" or _is(c.peek(3), "on")):
                c.i += 3              # "nodes with the logger but not the worker"
                e = Filter(e, Has(str(c.x[c.i - 1].value), absent=True))
                continue
            if isinstance(e, Rank) and _is(c.peek(), "among", "of") and _is(c.peek(1), "those", "them", "the") \
                    or isinstance(e, Rank) and _is(c.peek(), "among") and c.kind_at(1) == "nnoun":
                c.i += 2              # "the node using the least memory among those that have a worker"
                cond = self.post()
                if cond is None:
                    raise _refuse_word(c.peek() or c.x[c.i - 1], "after 'among those'")
                inner: Expr = e.base
                for x in (cond if isinstance(cond, list) else [cond]):
                    inner = Filter(inner, x)
                e = Rank(inner, e.metric, e.order, e.count, e.ordinal)
                continue
            if e is not base and _is(c.peek(), "and", "but") and (
                    c.kind_at(1) in ("cmp", "metric") or _is(c.peek(1), "with", "where", "whose", "that", "running")):
                c.i += 1   # "under 50 and over 40 degrees", "with load over 1 and temperature under 50", "hotter
                #            than 60 but cooler than 70": both hold (a "but" before a condition is not an exclusion)
            cond = self.post()
            if cond is None:
                c.i = j
                # "node which is hottest", "node that is the coolest", "node with the most free memory"
                k = c.i
                c.word("that", "which", "who", "whichever")
                c.word("is", "are", "has", "have")
                using = c.word("running", "runs", "run", "using", "uses") and _is(c.x[c.i - 1], "using", "uses")
                s = c.kind("sup")       # "whichever node is running coolest"
                if s is not None and allow_rank:
                    c.word("one")
                    key, order = s.value
                    if using and key == "disk_percent" and not set(s.words) & {"used", "usage", "free", "full",
                                                                               "fullest", "emptiest", "empty"}:
                        # "the node with the most disk space" has the most free; "using the most disk space", the least
                        order = "desc" if order == "asc" else "asc"
                    e = Rank(e, key, order)
                    continue
                c.i = k
                ranked = self._metric_superlative() if allow_rank else None
                if ranked is not None:
                    e = Rank(e, *ranked)
                    continue
                c.i = k
                return e
            if isinstance(cond, list):
                for x in cond:
                    e = Filter(e, x)
            else:
                e = Filter(e, cond)

    def _metric_superlative(self) -> tuple[str, str] | None:
        """'where the cpu is highest', 'whose temperature is lowest', 'with the disk usage lowest'."""
        c = self.c
        c.word("where", "whose", "with", "that", "which")
        c.word("has", "have")
        m = c.kind("metric")
        if m is None:
            return None
        c.word("is", "are")
        t = c.peek()
        if t is not None and t.kind == "sup" and t.value[0] in (m.value, "free_memory_percent" if m.value ==
                                                                "memory_percent" else m.value):
            c.i += 1          # "whose disk is fullest"
            return str(t.value[0]), str(t.value[1])
        if _is(t, "most", "least") and _is(c.peek(1), "full", "used", "busy", "loaded"):
            c.i += 2          # "whose disk is the most full"
            return str(m.value), "desc" if t.words[0] == "most" else "asc"
        if not _is(t, *SUP_ADJ_UP, *SUP_ADJ_DOWN):
            return None
        c.i += 1
        metric, order = str(m.value), "desc" if t.words[0] in SUP_ADJ_UP else "asc"
        if metric == "memory_percent":      # ranks go by free memory (see SUPERLATIVES)
            metric, order = "free_memory_percent", "asc" if order == "desc" else "desc"
        return metric, order

    def post(self) -> Cond | Has | list[Cond | Has] | None:
        c = self.c
        c.word("online")
        rel = c.word("that", "which", "who", "where", "whose")
        c.word("also")                # "every node that also has a worker"
        k0 = c.i
        if (c.word("without") or (c.word("with") and c.word("no"))) and c.kind_at() == "proc":
            return Has(str(c.take().value), absent=True)      # "nodes without a worker", "with no logger"
        c.i = k0
        if rel and c.word("do", "does") and c.word("not") and c.word(*_RUNWORDS) and c.kind_at() == "proc":
            return Has(str(c.take().value), absent=True)      # "nodes that don't have the worker"
        c.i = k0
        if _is(c.peek(), *_RUNWORDS) and _is(c.peek(1), "both") and c.kind_at(2) == "proc" \
                and _is(c.peek(3), "and") and c.kind_at(4) == "proc":
            c.i += 5                  # "nodes that have both a logger and a collector"
            return [Has(str(c.x[c.i - 3].value)), Has(str(c.x[c.i - 1].value))]
        # running X / that has it / with X
        j = c.i
        if c.word("is", "are"):
            if c.word("running") and (c.kind_at() == "proc" or _is(c.peek(), "it")):
                return Has(self._proc_or_it(), running=True)
            c.i = j
        t = c.peek()
        if _is(t, *_RUNWORDS) and _is(c.peek(1), "their", "its") and c.kind_at(2) == "proc":
            word = c.take().words[0]      # "nodes that have their worker stopped": their is the node's
            c.i += 1
            proc = self._proc_or_it()
            if word in ("has", "have", "having") and c.word("stopped", "down", "dead"):
                return Has(proc, running=False, stopped=True)
            return Has(proc, running=word in ("running", "runs", "run") or c.word("running"))
        if _is(t, *_RUNWORDS) and (c.kind_at(1) == "proc" or _is(c.peek(1), "it", "one")):
            word = c.take().words[0]
            proc = self._proc_or_it()
            if word in ("has", "have", "having") and c.word("stopped", "down", "dead"):
                return Has(proc, running=False, stopped=True)   # "nodes which have the worker stopped"
            running = word in ("running", "runs", "run") or c.word("running")
            return Has(proc, running=running)
        # "where it is stopped", "where logger is not running", "that have it stopped"
        k = c.i
        subj = None
        if _is(c.peek(), "it") or (c.kind_at() == "proc"):
            subj = "$it" if _is(c.peek(), "it") else c.value_at()
            c.i += 1
            if c.word("is", "are", "has", "have"):
                c.word("been")
            if c.word("stopped", "down", "dead", "crashed", "died", "failed", "exited") or \
                    (c.word("not") and c.word("running")):
                return Has(subj, running=False, stopped=True)
            if c.word("running", "up") or (c.i == k + 1 and c.word("runs", "run")):   # "where the worker runs"
                return Has(subj, running=True)
        c.i = k
        # comparisons
        if _is(c.peek(), "is", "are") and _is(c.peek(1), "running", "using"):
            c.i += 1                              # "nodes are using more than 50% of their cpu"
        c.word("running", "using", "run", "runs")   # "machines running hotter than 65 degrees", "nodes using more than 50% ..."
        if _is(c.peek(), "at") and c.kind_at(1) == "metric":     # "nodes at temperatures above 50"
            c.i += 1
        c.word("with", "having", "has", "have", "where", "whose")
        c.word("their", "its")     # "nodes that have their disk more than 75% full"
        c.word("is", "are")
        metric = None
        m = c.kind("metric")
        if m is not None:
            metric = m.value
            c.word("is", "are", "of")
        cm = c.kind("cmp")
        if cm is None:
            k = c.i
            c.word("at")
            n = c.kind("num")
            if n is not None:
                unit = self._unit()
                if metric is None and c.kind_at() == "metric":
                    metric = c.take().value
                pair = tuple(t.words[0] for t in c.x[c.i:c.i + 2])
                after = c.peek(2)
                if pair in OR_MORE and not (after is not None and after.kind == "num"):
                    c.i += 2
                    key = self._metric_for(metric, None, unit, n)
                    return Cond(key, OR_MORE[pair], float(n.value))
                if unit is not None and _is(c.x[k], "at"):     # "nodes at 47 degrees": exactly
                    return Cond(self._metric_for(metric, None, unit, n), "eq", float(n.value))
            c.i = k
            if rel or m is not None:
                c.i = j - (1 if rel else 0)
            return None
        op, hint = cm.value
        if op == "between":
            lo = self._number()
            if not c.word("and"):
                raise Refusal("'between' needs two numbers ('between 40 and 50'); nothing was planned")
            hi = self._number()
            unit = self._unit()
            if metric is None and c.kind_at() == "metric":    # "between 30 and 60 percent memory"
                metric = c.take().value
                if c.word("free") and metric == "memory_percent":
                    metric = "free_memory_percent"
                c.word("used", "usage", "use")
            key = self._metric_for(metric, hint, unit, cm)
            return [Cond(key, "ge", min(lo, hi)), Cond(key, "le", max(lo, hi))]
        v = self._number()
        unit = self._unit()
        if metric is None and _is(c.peek(), "of") and (c.kind_at(1) == "metric" or
                                                      (_is(c.peek(1), "their", "its") and c.kind_at(2) == "metric")):
            c.i += 2 if c.kind_at(1) == "metric" else 3     # "more than 50% of their memory"
            metric = c.x[c.i - 1].value
        if metric is None and c.kind_at() == "metric":
            metric = c.take().value        # "less than 50% memory used"
            if c.word("free") and metric == "memory_percent":
                metric = "free_memory_percent"
            c.word("used", "usage", "use")
        elif metric is not None and c.word("full", "used"):   # "whose disk is more than 40% full"
            pass
        elif metric == "memory_percent" and c.word("free"):     # "whose memory is more than 40% free"
            metric = "free_memory_percent"
        pair = tuple(t.words[0] for t in c.x[c.i:c.i + 2])
        after = c.peek(2)
        if pair in OR_MORE and not (after is not None and after.kind == "num"):   # not "under 50 and over 40"
            new = OR_MORE[pair]
            if op == "eq" or (op in ("gt", "ge") and new == "ge") or (op in ("lt", "le") and new == "le"):
                c.i += 2
                op = new
        key = self._metric_for(metric, hint, unit, cm)
        return Cond(key, op, v)

    def _proc_or_it(self) -> str:
        c = self.c
        if c.word("it", "one"):
            return "$it"
        p = c.kind("proc")
        assert p is not None
        if c.kind_at() == "pnoun" and not c.value_at():
            c.i += 1          # "running the worker process"
        return str(p.value)

    def _number(self) -> float:
        c = self.c
        n = c.kind("num")
        if n is None:
            t = c.peek()
            if t is None:
                raise Refusal("a comparison needs a number; nothing was planned")
            raise _refuse_word(t, "where a number was expected")
        return float(n.value)

    def _unit(self) -> str | None:
        u = self.c.kind("unit")
        return None if u is None else u.value

    def _metric_for(self, metric: str | None, hint: str | None, unit: str | None, cm: Lexeme) -> str:
        if metric is None:
            metric = hint
        if metric is None and unit == "temperature_c":
            metric = "temperature_c"
        if metric is None and self._last_metric is not None and unit != "temperature_c" and \
                (unit is None or self._last_metric not in ("temperature_c", "load_1m")):
            metric = self._last_metric      # "memory above 30% but below 60%": the same metric
        if metric is not None:
            self._last_metric = metric
        if metric is None:
            raise Clarification(f"{cm.text!r} what? Say which metric: temperature, cpu, load, memory or disk",
                                ["temperature", "cpu", "load", "memory", "disk"])
        if unit == "temperature_c" and metric != "temperature_c":
            raise Refusal(f"degrees don't measure {metric}; nothing was planned")
        if unit == "percent" and metric in ("temperature_c", "load_1m"):
            raise Refusal(f"{metric} is not a percentage; nothing was planned")
        return metric

    def _procs_of(self, ids: list[str]) -> list[str]:
        return sorted(set(self.lx.processes.values()))

    # ---- questions and reads --------------------------------------------------------------

    def read_process(self, verb: str) -> Step:
        """status/logs [of] PROC... [on TARGET] [N lines]."""
        c = self.c
        step = Step(verb=verb)
        while c.kind_at() == "verb" and c.value_at() in ("status", "logs"):
            c.i += 1
        c.word("of", "for", "on")
        if verb == "status" and (c.kind_at() == "node" or (c.kind_at() == "nnoun"
                                                                                        and c.kind_at(1) == "node")):
            c.kind("nnoun")
            n = c.take()
            if c.done() or self._at_boundary():   # "status edge-1", "check node-b": the node itself
                return Step(verb="node", target=Ids([n.value]))
            c.i -= 1
        self._lines(step)
        c.word("of", "for", "from")
        self.objects(step)
        if _is(c.peek(), "logs", "log", "status", "state", "output"):
            c.i += 1
            c.word("lines", "line", "output")      # "the logger log lines on nb", "the logger's log output"
        self._lines(step)
        step.target = self.target_opt()
        self._lines(step)
        return step

    def question(self) -> Step:
        c = self.c
        x = c.x[c.i:]
        end = next((k for k, t in enumerate(x) if k and (t.kind == "seq" or _is(t, "then"))), len(x))
        words = x[:end]
        prev = self._prev_step
        if words and _is(words[0], "its", "their") and prev is not None and not prev.mutating \
                and prev.target is not None and 1 < len(words) <= 3 and all(
                    t.kind in ("metric", "adj") or (t.kind == "verb" and t.value == "status")
                    or _is(t, "status", "state", "health", "metrics", "stats", "details", "processes")
                    for t in words[1:]):
            c.i += len(words)      # "is nd online? I'd like to know its status": the node just asked about
            one = isinstance(prev.target, Ids) and len(prev.target.ids) == 1
            return Step(verb="node" if one else "metrics", target=prev.target)
        kinds = {t.kind for t in words}
        ws = {t.words[0] for t in words if len(t.words) == 1}
        has_proc = "proc" in kinds
        verbs = {t.value for t in words if t.kind == "verb"}
        if _is(words[0], "how") and len(words) > 2 and _is(words[1], "many") and words[2].kind == "nnoun" \
                and not verbs & MUTATING:
            c.i += 1               # "how many nodes in the cluster are running the worker process?"
            return self._how_many()
        if _is(words[0], "on", "in", "at") and len(words) > 2 and _is(words[1], "which", "what"):
            c.i += 1                    # "on which nodes is the logger not running"
            words = words[1:]
            ws.discard("on")
        if has_proc and _is(words[0], "did", "has", "have") and any(
                _is(t, "crash", "die", "fail", "stop", "restart", "crashed", "died", "failed", "stopped", "restarted")
                or (t.kind == "verb" and t.value in MUTATING) for t in words[2:]):
            c.i += 1                   # "did the logger on edge-2 crash?": its status (state, restarts)
            step = self._proc_read("status")
            t = c.peek()
            if t is not None and (_is(t, "crash", "die", "fail", "stop", "restart", "crashed", "died", "failed",
                                      "stopped", "restarted") or (t.kind == "verb" and t.value in MUTATING)):
                c.i += 1
                if t.words[0] in ("crash", "die", "fail", "stop", "crashed", "died", "failed", "stopped"):
                    step.asked = "stopped"     # "did it crash? if so, start it": where it is down
            c.word("again", "recently", "lately")
            return step
        if any(_is(t, "anything", "anyone") for t in words[:2]) and ws & {"offline", "down"} and len(words) <= 4 \
                and not kinds & {"proc", "node", "metric"}:
            c.i += len(words)          # "anything offline?"
            return Step(verb="offline")
        if any(_is(t, "anything", "anyone") for t in words[:2]) and not has_proc and not verbs & MUTATING:
            c.i += next(k for k, t in enumerate(words) if _is(t, "anything", "anyone")) + 1
            e = self.posts(All())      # "does anything run hotter than 55C?"
            if isinstance(e, All):
                raise _refuse_word(c.peek() or words[0])
            return Step(verb="nodes", target=e)
        if has_proc and ws & {"printing", "writing", "logging", "outputting", "saying", "printed", "written", "logged"} \
                and not verbs & MUTATING:
            return self._scaffold_then(lambda: self._proc_read("logs"))   # "what nb's logger has been printing"
        if _is(words[0], "which", "what") and len(words) > 3 and words[1].kind == "nnoun" and words[2].kind == "metric" \
                and not has_proc and not verbs & MUTATING:
            c.i += 2                   # "which node's disk is closest to full": that node
            e = self.posts(All())
            if not isinstance(e, All):
                return Step(verb="nodes", target=e)
            c.i -= 2
        if has_proc and "without" in ws and not verbs & MUTATING:
            k = 0                      # "is there any node without a worker?"
            while k < len(words) and (_is(words[k], *_Q, "there", "any", "all", "every") or words[k].kind == "nnoun"):
                k += 1
            if k < len(words) and _is(words[k], "without") and any(t.kind == "nnoun" for t in words[:k]):
                c.i += k
                e = self.posts(All())
                if not isinstance(e, All):
                    return Step(verb="nodes", target=e)
                c.i -= k
        if _is(words[0], "whose") and "metric" in kinds and not has_proc:
            e = self.posts(All())      # "whose disk is the most full?"
            if isinstance(e, All):
                raise _refuse_word(words[0])
            return Step(verb="nodes", target=e)
        lead_q = 0
        while lead_q < len(words) - 2 and _is(words[lead_q], *_Q, "any", "there"):
            lead_q += 1
        if _is(words[0], "is", "are", "does") and len(words) > 3 and words[1].kind == "node" and \
                all(t.kind in ("metric", "cmp", "num", "unit", "adj") or _is(t, "is", "at", "running") for t in words[2:]) \
                and any(t.kind == "cmp" for t in words):
            c.i += len(words)          # "is node-c's temperature above 50?": the node, with its reading
            return Step(verb="node", target=Ids([str(words[1].value)]))
        if has_proc and words[0].kind == "proc" and len(words) > 1 and _is(words[1], *(_STATEWORDS - {"stopped"})) \
                and not verbs & MUTATING:
            return self._proc_read("status", state_word=True)     # "worker down on nb?"
        if words[lead_q].kind == "metric" and len(words) > lead_q + 1 and words[lead_q + 1].kind == "cmp" \
                and not verbs & MUTATING:
            c.i += lead_q
            m = c.take()               # "disks over 75%?", "who's cpu > 80": the nodes where it is
            cm = c.take()
            op, hint = cm.value
            v = self._number()
            unit = self._unit()
            return Step(verb="nodes", target=Filter(All(), Cond(self._metric_for(str(m.value), hint, unit, cm), op, v)))
        if words[0].kind in ("sup", "num", "count", "ord") and "metric" in kinds and not has_proc \
                and any(_is(t, "its", "their") for t in words) and not verbs & MUTATING:
            e = self.texpr()           # "hottest node and its load"
            if c.word("and") and c.word("its", "their") and c.kind_at() == "metric":
                return Step(verb="metrics", target=e, metric=str(c.take().value))
            raise _refuse_word(c.peek() or words[0])
        if "status" in verbs and not has_proc and sum(t.kind == "node" for t in words) == 1 and all(
                t.kind == "node" or (t.kind == "verb" and t.value in ("status", "show")) or _is(t, *_Q, "of", "for", "on")
                for t in words):
            c.i += len(words)      # "nb status", "what's the status of nb": the node
            return Step(verb="node", target=Ids([next(t.value for t in words if t.kind == "node")]))
        # a read with a status or logs verb later in the clause ("show worker status on all nodes")
        if verbs & {"status", "logs"} or ("lines" in ws and has_proc):
            return self._scaffold_then(lambda: self._proc_read("logs" if ("logs" in verbs or "lines" in ws)
                                                               else "status"))
        if has_proc and _is(words[0], "does", "do") and len(words) >= 4 and words[1].kind == "node" \
                and _is(words[2], *_RUNWORDS) and words[3].kind == "proc":     # "does node-b run the logger?"
            c.i += 4
            return Step(verb="status", processes=[words[3].value], target=Ids([words[1].value]))
        if has_proc and _is(words[0], "how") and len(words) > 3 and (
                _is(words[1], "often") or (_is(words[1], "many") and _is(words[2], "times"))):
            c.i += 2 if _is(words[1], "often") else 3    # "how many times has the logger on node-c restarted"
            c.word("has", "have", "did", "does", "was", "is")
            step = self._proc_read("status")
            c.word("been")
            t = c.peek()
            if (t is not None and t.kind == "verb" and t.value == "restart") or \
                    _is(t, "restarted", "crashed", "died", "failed", "stopped", "restarts", "crash", "die", "fail"):
                c.i += 1
            return step
        if has_proc and "restarts" in ws and _is(words[0], "how"):     # "how many restarts has the logger had"
            c.i += next(k for k, t in enumerate(words) if _is(t, "restarts")) + 1
            c.word("has", "have", "did", "does")
            step = self._proc_read("status")
            c.word("had", "have", "done")
            return step
        if verbs & MUTATING:
            raise Refusal("I can only take an action at the start of a step ('restart PROCESS on NODE'); "
                          "nothing was planned")
        if has_proc and ("where" in ws or "who" in ws or "nnoun" in kinds or ws & {"which"}) and \
                not _is(words[0], "is", "are") and not kinds & {"sup", "cmp", "ord"}:
            return self._scaffold_then(self._where_runs)
        if has_proc and ws & _STATEWORDS and ws & {"is", "are", "how"}:
            return self._scaffold_then(lambda: self._proc_read("status", state_word=True))
        if "service" in kinds and ("describe" in verbs or "pnoun" not in kinds or
                                   any(t.kind == "pnoun" and t.words[0] == "service" for t in words)):
            return self._scaffold_then(self._describe)
        if has_proc and _is(words[0], "is", "are") and not ("nnoun" in kinds and "where" in ws):
            return self._scaffold_then(lambda: self._proc_read("status", state_word=True))
        node_states = ("online", "up", "down", "offline", "alive", "reachable", "ok", "healthy", "fine", "running",
                       "working", "responding")
        if _is(words[0], "is", "are") and len(words) >= 3 and words[1].kind == "node" and \
                _is(words[2], *node_states) and all(_is(t, *node_states, "and", "or", "still", "currently")
                                                    for t in words[3:]) and not _is(words[-1], "and", "or"):
            c.i += len(words)      # "is nd online", "is nd up and running", "is nd online and healthy"
            return Step(verb="node", target=Ids([words[1].value]))
        if ws & {"offline", "down"} and ws & {"anything", "anyone", "any"} and not kinds & {"proc", "node", "metric"} \
                and len(words) <= 5:
            c.i += len(words)          # "anything offline right now?"
            return Step(verb="offline")
        if ws & {"offline", "down"} and "nnoun" in kinds and not kinds & {"proc", "sup", "cmp", "node", "metric"} and \
                all(t.kind == "nnoun" or _is(t, *_Q, "offline", "down", "all", "show", "list", "there", "currently",
                                             "any", "of", "our")
                    or (t.kind == "verb" and t.value == "show") for t in words):
            c.i += len(words)
            return Step(verb="offline")
        if ws & {"details", "detail", "information", "about", "info"} and "node" in kinds and not has_proc \
                and sum(t.kind == "node" for t in words) == 1:
            for t in words:
                if not (t.kind == "node" or t.kind == "nnoun" or _is(t, *_Q, "details", "detail", "information",
                                                                      "about", "info", "of", "on", "for", "me", "all")
                        or (t.kind == "verb" and t.value in ("show", "describe"))):
                    raise _refuse_word(t)
            c.i += len(words)
            return Step(verb="node", target=Ids([next(t.value for t in words if t.kind == "node")]))
        if (ws & {"doing", "looking", "going"} or {"up", "with"} <= ws) and not has_proc \
                and sum(t.kind == "node" for t in words) == 1 \
                and all(t.kind in ("node", "nnoun", "metric", "adj")
                        or _is(t, *_Q, "doing", "looking", "going", "on", "up", "to", "currently", "with", "its", "their")
                        for t in words):
            c.i += len(words)      # "what's nc doing?", "what is node nc up to"
            return Step(verb="node", target=Ids([next(t.value for t in words if t.kind == "node")]))
        lead = 0    # "any node over 55 degrees?", "are there any nodes hotter than 60", "is any node offline"
        while lead < len(words) and _is(words[lead], "is", "are", "there") and lead < 2:
            lead += 1
        if lead < len(words) and _is(words[lead], "any") and not has_proc and lead + 1 < len(words) \
                and words[lead + 1].kind == "nnoun" and (lead == 0 or _is(words[0], "is", "are")):
            c.i += lead + 1
            return self._scaffold_then(self._nodes)
        if "many" in ws and "nnoun" in kinds and ws & {"how"}:
            return self._scaffold_then(self._how_many)
        if not has_proc and ("pnoun" in kinds or (ws & {"what"} and ws & (_RUNWORDS | {"stopped"})
                                                  and not kinds & {"metric", "adj"} and "we" not in ws)
                             or (ws & {"what"} and len(words) >= 3 and _is(words[1], "is", "are")
                                 and _is(words[2], "on", "at") and "metric" not in kinds and "adj" not in kinds)):
            return self._scaffold_then(self._processes)
        if words[lead_q].kind == "sup" and not has_proc and not verbs & MUTATING:
            return self._scaffold_then(self._nodes)     # "busiest box by cpu?"
        if "metric" in kinds or "adj" in kinds or ws & {"metrics", "stats", "temperatures", "temps"}:
            return self._scaffold_then(self._metrics)
        if "service" in kinds and ("describe" in verbs or "pnoun" not in kinds):
            return self._scaffold_then(self._describe)
        if kinds & {"nnoun", "sup", "cmp", "node"} or ws & {"cluster", "fleet"}:
            return self._scaffold_then(self._nodes)
        here = c.peek()
        assert here is not None
        raise _refuse_word(here, "(the offline planner understands restart, stop, start, status, logs and "
                              "questions about nodes, processes and metrics)")

    def _scaffold_then(self, f: Callable[[], Step]) -> Step:
        c = self.c
        while c.peek() is not None and (_is(c.peek(), *_Q, "there", "me", "us") or
                                        (c.kind_at() == "verb" and c.value_at() in ("show", "describe")
                                         and f != self._describe)):
            c.i += 1
        return f()

    def _proc_read(self, verb: str, state_word: bool = False) -> Step:
        c = self.c
        step = Step(verb=verb)
        self._lines(step)
        c.word("of", "from")
        if c.kind_at() == "verb" and c.value_at() in ("status", "logs"):
            c.i += 1
            c.word("of", "for", "from")
        self._lines(step)
        pre: Expr | None = None
        if c.kind_at() in ("node",) and c.kind_at(1) == "proc":
            pre = Ids([c.take().value])       # "node-b logger logs"
        self.objects(step)
        while verb == "logs" and c.kind_at() == "verb" and c.value_at() == "logs" and c.kind_at(1) == "verb" \
                and c.value_at(1) == "logs":
            c.i += 1                     # "the logger's log output on node-b"
        c.word("is", "are", "had")       # "... has the logger had on node-c"
        if state_word and c.word(*_STATEWORDS):
            step.asked = "stopped" if c.x[c.i - 1].words[0] in ("down", "stopped") else "running"
        if verb == "logs" and (_is(c.peek(), "has", "have", "is", "was") or _is(c.peek(), "printing", "writing")):
            c.word("has", "have", "is", "was")     # "what nb's logger has been printing"
            c.word("been")
            c.word("printing", "writing", "logging", "outputting", "saying", "printed", "written", "logged")
        if c.kind_at() == "verb" and c.value_at() in ("status", "logs"):
            c.i += 1
        self._lines(step)
        if pre is None and state_word and _is(c.peek(), "anywhere"):   # "is the worker running anywhere"
            c.i += 1
            pre = All()
        step.target = self.target_opt() if pre is None else pre
        if verb == "logs" and _is(c.peek(), "has", "have", "is", "was"):
            c.word("has", "have", "is", "was")     # "what the logger on nb has been logging"
            c.word("been")
            c.word("printing", "writing", "logging", "outputting", "saying", "printed", "written", "logged")
        if state_word and c.word(*_STATEWORDS):
            step.asked = "stopped" if c.x[c.i - 1].words[0] in ("down", "stopped") else "running"
        self._lines(step)
        if not step.processes and not step.pronoun and not step.all_processes:
            raise Clarification(f"{verb} of which process?", sorted(set(self.lx.processes.values())))
        return step

    def _where_runs(self) -> Step:
        """where is X running / which nodes run X / nodes running X / who has X."""
        c = self.c
        c.word("all", "every", "each")
        c.kind("nnoun")
        c.word("that", "which", "who")
        c.word("is", "are", "does", "do")
        self._nodes_word = c.kind("nnoun")
        procs: list[tuple[str, bool]] = []
        while True:
            w = c.peek()
            running = False
            if _is(w, *_RUNWORDS) or _is(w, "is", "are"):
                running = w.words[0] in ("running", "runs", "run")
                c.i += 1
                if _is(c.peek(), "running"):
                    running = True
                    c.i += 1
            c.word("their", "its")        # "which nodes have their worker stopped"
            p = c.kind("proc")
            if p is None:
                break
            c.kind("pnoun")
            c.word("is", "are")
            if _is(c.peek(), "not") and _is(c.peek(1), "running") or _is(c.peek(), "stopped", "down"):
                c.i += 2 if _is(c.peek(), "not") else 1    # "which nodes is the logger not running on"
                c.word("on", "at")
                procs.append((p.value, False))
                if not c.word("and"):
                    break
                continue
            if _is(c.peek(), "running", "run", "runs"):
                running = True
                c.i += 1
            c.word("is", "are")
            if _is(t := c.peek(), "running", "run", "runs", "supervised", "hosted"):
                running = running or t.words[0] != "supervised"
                c.i += 1
            procs.append((p.value, True))
            if not c.word("and"):
                break
        if not procs:
            t = c.peek()
            raise _refuse_word(t) if t else Refusal("which process?")
        e: Expr = All()
        for name, running in procs:
            e = Filter(e, Has(name, running=True) if running else Has(name, stopped=True))
        if not c.done() and not self._at_boundary():
            e2 = self.posts(e)
            e = e2
            if not c.done() and not self._at_boundary():
                if self._except_word():
                    e = Except(e, self.union())
        return Step(verb="nodes", target=e)

    def _how_many(self) -> Step:
        c = self.c
        c.word("many")
        if c.word("of"):
            c.word("our", "the", "these", "all")
        c.kind("nnoun")
        if c.word("we"):
            c.word("got", "have")       # "how many nodes we got"
        self._in_cluster()
        c.word("are", "is", "do", "does")
        if c.word("we"):
            c.word("have", "got")       # "how many nodes do we have"
        c.word("there")
        step = Step(verb="nodes", target=All(), include_offline=True)
        if c.word("online", "up", "alive"):
            step.include_offline = False
        elif _is(c.peek(), "offline", "down"):
            c.i += 1          # "how many nodes are offline": the offline ones, listed
            return Step(verb="offline")
        self._in_cluster()
        c.word("in", "of")
        c.word("this", "our", "the")
        c.word("cluster", "fleet")
        if c.word("we"):
            c.word("have")
        if not (c.done() or self._at_boundary()):    # "how many nodes are over 60 degrees": the list answers it
            step.include_offline = False
            step.target = self.posts(All())
        return step

    def _processes(self) -> Step:
        """which processes does X supervise / what runs on X / processes on X / what does X run."""
        c = self.c
        step = Step(verb="processes")
        c.word("many")     # "how many processes does nb have": the list answers it
        c.word("all", "every", "each")
        c.kind("pnoun")
        c.word("that", "which")
        c.word("does", "do", "is", "are")
        c.word("stopped", "down")    # "which processes are stopped", "what is stopped on nb": the list shows it
        if c.word("running", "runs", "run", "supervised", "hosted", "supervises", "hosts", "has", "have"):
            c.word("on", "at", "in", "by")
            if c.word("where"):
                step.verb, step.include_offline = "nodes", True
                return step
        if c.done() or self._at_boundary():
            step.verb, step.include_offline = "nodes", True
            return step
        self._prep()
        step.target = self.texpr()
        c.word("is", "are")       # "what processes nd is running"
        c.word("supervise", "supervises", "run", "runs", "have", "has", "host", "hosts", "running")
        return step

    def _metrics(self) -> Step:
        """how hot is X / temperature of X / metrics on X / how much memory is free on X / temperatures."""
        c = self.c
        step = Step(verb="metrics")
        c.word("much", "many")
        for _ in range(4):
            t = c.peek()
            if t is not None and t.kind == "metric":
                step.metric = t.value
                c.i += 1
            elif t is not None and t.kind == "adj":
                step.metric = t.value
                c.i += 1
            elif _is(t, "metrics", "stats", "temperatures", "temps", "is", "are", "free", "used", "of", "does", "do"):
                if t.words[0] in ("temperatures", "temps"):
                    step.metric = "temperature_c"
                if t.words[0] == "free" and step.metric == "memory_percent":
                    step.metric = "free_memory_percent"
                c.i += 1
            else:
                break
        c.word("looking", "doing")      # "how is disk space looking across the fleet"
        if _is(c.peek(), "at") and _is(c.peek(1), "on", "in", "for"):
            c.i += 1                    # "what's the cpu at on n-08"
        if c.done() or self._at_boundary():
            step.target = All()
            return step
        k = c.i     # "which nodes are (running) hot", "what machines are busy": each node's reading of it
        if c.kind("nnoun") and c.word("is", "are"):
            c.word("running")
            if c.kind_at() in ("adj", "metric") and self._boundary_at_safe(c.i + 1):
                step.metric = c.take().value
                step.target = All()
                return step
        c.i = k
        self._prep()
        step.target = self.texpr()
        if self._sorted_by(step):
            return step
        c.word("is", "are")
        t = c.peek()
        if t is not None and t.kind in ("metric", "adj"):
            step.metric = t.value
            c.i += 1
        c.word("metrics", "stats", "free", "used", "have", "has")
        c.word("running", "using", "showing", "reading", "at")   # "what temperature is nd running at"
        c.word("at", "right")
        return step

    def _describe(self) -> Step:
        c = self.c
        c.word("describe")
        if c.kind_at() == "verb":
            c.i += 1
        c.kind("pnoun")
        s = c.kind("service")
        if s is None:
            raise _refuse_word(c.peek()) if c.peek() else Refusal("describe which service?")  # type: ignore[arg-type]
        c.kind("pnoun")
        return Step(verb="describe", service=s.value)

    def _nodes(self) -> Step:
        """show nodes / which node is the hottest / show the 2 hottest nodes / show node X."""
        c = self.c
        step = Step(verb="nodes")
        t = c.peek()
        if t is not None and t.kind == "nnoun" and c.kind_at(1) == "node" \
                and (c.i + 2 >= len(c.x) or self._boundary_at(c.i + 2)):
            c.i += 1
            step.verb, step.target = "node", Ids([c.take().value])
            return step
        if t is not None and t.kind == "node" and (c.i + 1 >= len(c.x) or self._boundary_at(c.i + 1)):
            c.i += 1
            step.verb, step.target = "node", Ids([t.value])
            return step
        if t is not None and (t.kind == "nnoun" or _is(t, "cluster", "fleet")) and (
                c.i + 1 >= len(c.x) or self._boundary_at(c.i + 1)):
            c.i += 1               # "show the nodes", "show the cluster"
            step.include_offline = True
            step.target = All()
            return step
        if t is not None and t.kind == "nnoun" and [x.words[0] for x in c.x[c.i + 1:c.i + 4]] == ["do", "we", "have"] \
                and (c.i + 4 >= len(c.x) or self._boundary_at(c.i + 4)):
            c.i += 4               # "what nodes do we have"
            step.include_offline = True
            step.target = All()
            return step
        if _is(t, "all", "every") and c.kind_at(1) == "nnoun" and \
                (c.i + 2 >= len(c.x) or self._boundary_at(c.i + 2)):
            c.i += 2
            step.include_offline = True
            step.target = All()
            return step
        # "which node is the hottest": node noun, is, superlative ("which edge node is hottest": of a group)
        group = t if t is not None and t.kind == "group" and c.kind_at(1) == "nnoun" else None
        if group is not None:
            c.i += 1
            t = c.peek()
        if _is(t, "one") and _is(c.peek(1), "of") and c.kind_at(2) in ("nnoun", "group"):
            c.i += 2                  # "which one of the nodes is the hottest"
            t = c.peek()
        if _is(t, "of") and c.kind_at(1) in ("nnoun", "group"):
            c.i += 1                  # "which of the edges has the fullest disk"
            t = c.peek()
        if group is None and t is not None and t.kind == "group" and c.kind_at(1) == "nnoun":
            group = t
            c.i += 1
            t = c.peek()
        ordinal = c.kind_at(2) == "ord" and c.kind_at(3) == "sup"
        if t is not None and (t.kind == "nnoun" or _is(t, "one")) and _is(c.peek(1), "is", "are", "has", "have") \
                and ordinal:      # "which node is the second hottest (one)"
            n = c.x[c.i + 2].value
            s = c.x[c.i + 3]
            c.i += 4
            c.word("one")
            c.kind("nnoun")
            among: Expr = Filter(All(), Group(group.value)) if group is not None else All()
            step.target = Rank(among, s.value[0], s.value[1], ordinal=int(n))
            return step
        if t is not None and (t.kind == "nnoun" or _is(t, "one")) and _is(c.peek(1), "is", "are", "has", "have") \
                and c.kind_at(2) == "sup":
            c.i += 3
            c.word("one")
            c.kind("nnoun")
            self._in_cluster()        # "which node is the hottest one in the cluster"
            s = next(x for x in reversed(c.x[:c.i]) if x.kind == "sup")
            base: Expr = Filter(All(), Group(group.value)) if group is not None else All()
            step.target = Rank(self.posts(base, allow_rank=False), s.value[0], s.value[1])
            return step
        if group is not None:
            c.i -= 1
        if t is not None and t.kind == "nnoun" and _is(c.peek(1), "are", "is") and _is(c.peek(2), "online", "up") \
                and (c.i + 3 >= len(c.x) or self._boundary_at(c.i + 3)):
            c.i += 3     # "which hosts are online"
            step.target = All()
            return step
        step.target = self.texpr()
        if self._sorted_by(step):
            return step
        c.word("is", "are")
        c.word("online")
        if _is(c.peek(), "do", "does") and _is(c.peek(1), "we") and _is(c.peek(2), "have"):
            c.i += 3     # "what nodes do we have"
            step.include_offline = isinstance(step.target, All)
        return step

    def _sorted_by(self, step: Step) -> bool:
        """'show all nodes sorted by cpu' ("rank the nodes by cpu"): every node, highest first."""
        c = self.c
        j = c.i
        if isinstance(step.target, All) and c.word("sorted", "ordered", "ranked") and c.word("by") \
                and c.kind_at() == "metric":
            m = str(c.take().value)
            order = "asc" if c.word("ascending") else "desc"
            if m == "memory_percent":
                m, order = "free_memory_percent", "desc" if order == "asc" else "asc"
            step.verb, step.target = "nodes", Rank(All(), m, order, -1)
            return True
        c.i = j
        return False

    def _boundary_at_safe(self, k: int) -> bool:
        return k >= len(self.c.x) or self._boundary_at(k)

    def _boundary_at(self, k: int) -> bool:
        t = self.c.x[k]
        return t.kind == "seq" or _is(t, "then")


def explain(p: Parsed) -> str:
    """The intermediate form as a few lines of text (``--explain``)."""
    out = []
    for a, b in p.corrections:
        out.append(f"read {a!r} as {b!r}")
    for k, s in enumerate(p.steps, 1):
        out.append(f"step {k}: " + ", ".join(f"{key}={val}" for key, val in s.show().items()))
    if p.reason:
        out.append(f"reason: {p.reason}")
    return "\n".join(out)


__all__ = ["ARTICLES", "SUPERLATIVES", "Clarification", "Parsed", "Refusal", "Step", "explain", "parse"]
