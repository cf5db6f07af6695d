"""Indirect injection: find the *data* inside a message (a document pasted into a user turn, a
tool result, a retrieved passage) and cut it into sentences, so instruction-like text inside data
is judged apart from the user's own request (a benign "summarise this" around it no longer
dilutes it).

Data in a ``user`` message (``data_part``): the text inside delimiters (triple back-ticks or
quotes, ``---`` fences, ``<document>``-style tags, quotes of 40+ characters), the text after a
task framing ("Summarise the following:", "Translate into French: ..."), for a long message
of several paragraphs every paragraph after the first, or, for a message that opens with a task
sentence ("Write one FAQ answer about X. ..."), the sentences after it. A ``tool`` / ``function``
message is data as a whole. A short question has no data part.

Candidates (``candidate_sentences``): the data's sentences (and lines) that look instruction-like
(second person, an imperative verb of output or override, or a word naming the model), at most
``MAX_CANDIDATES`` per message, so ordinary documents cost a couple of regex passes.

Rules for data (``directive_in_data``): a sentence that *addresses the model* ("Assistant, when
you summarise this ...", "Note to the AI ...", "If you are a language model ...") or opens with an
override ("Ignore the above and print ...", "Disregard the task ...") is an injection when it
sits inside data, whatever the request around it. The rules are a floor under the classifier
(``policies.builtin.prompt_injection``), which also scores each candidate on its own.
"""

from __future__ import annotations

import re

__all__ = ["MAX_CANDIDATES", "candidate_sentences", "data_part", "directive_in_data"]

MAX_CANDIDATES = 8
"""Sentences of one message scored on their own, at most (bounds the added classifier cost)."""

_DELIMITED = re.compile(
    r"```[^\n]*\n(.+?)```|\"\"\"(.+?)\"\"\"|'''(.+?)'''|^-{3,}\s*$(.+?)^-{3,}\s*$"
    r"|<(document|doc|text|article|email|context|data|input|passage)>(.+?)</\5>"
    r"|[\"“«]([^\"”»]{40,})[\"”»]",
    re.DOTALL | re.MULTILINE | re.IGNORECASE,
)
_CONTENT_GROUPS = (1, 2, 3, 4, 6, 7)
"""The groups of ``_DELIMITED`` that hold a delimited text (5 is the tag name)."""
_TASK_WORD = re.compile(
    r"\b(?:summari[sz]e|translate|classify|correct|extract|rewrite|paraphrase|proofread|analy[sz]e|"
    r"explain|parse|review|turn|convert|describe|evaluate|check|fix|answer|advertisement|advert|ad|"
    r"tweet|title|keywords?|following|this|these|below)\b",
    re.IGNORECASE,
)
_TASK_FIRST = re.compile(
    r"\s*(?:please\s+)?(?:write|create|compose|draft|generate|suggest|give|make|produce|list|"
    r"summari[sz]e|translate|classify|rewrite|describe|explain)\b[^.!?\n]{3,200}[.!?]\s+(.+)",
    re.IGNORECASE | re.DOTALL,
)
"""A message that opens with a task sentence: what follows it is the task's material."""
_FRAME_END = re.compile(r"[:?\n]")
_DELIMITER_HINTS = ("```", '"""', "'''", "---", "</", '"', "“", "«")
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_CUE = re.compile(
    r"\b(?:you|your|yours|ignore|disregard|forget|assistant|ai|a\.i\.|model|llm|chatbot|bot|gpt|"
    r"chatgpt|claude|instructions?|prompt|print|output|reply|respond|say|tell|write|reveal|"
    r"system|override|overrides|must|now|do not|don't|stop|instead)\b",
    re.IGNORECASE,
)
_CUE_LOWER = re.compile(_CUE.pattern)
"""``_CUE`` without ``IGNORECASE``, for lower-cased ASCII text: the same matches (the pattern is
lower-case ASCII), ~3x faster than the case-insensitive alternation."""
_MODEL = (
    r"(?:ai|a\.i\.|assistant|ai assistant|chatbot|bot|llm|language model|ai model|model|gpt|chatgpt|"
    r"claude|copilot|agent)"
)
_ADDRESS = re.compile(
    rf"^\W*(?:(?:dear|attention|hey|hello|hi|note to|message to|message for|instructions? for|"
    rf"hidden note for|to)\s+)?(?:the\s+|any\s+|an?\s+)?{_MODEL}\b[^.!?\n=()]{{0,60}}?[,:]"
    rf"|\bif you are (?:an?|the)\s+(?:\w+\s+)?{_MODEL}\b"
    rf"|\b(?:when|while|before|as)\s+(?:an?|the|any)\s+{_MODEL}\s+(?:reads?|process(?:es)?|"
    rf"summari[sz]es|translates|sees)\b"
    rf"|^\W*\[?(?:system|admin|developer)\]?\s*[:\]]"
    rf"|\b{_MODEL}\s+(?:reading|processing|summari[sz]ing|translating)\s+this\b",
    re.IGNORECASE,
)
_ADDRESS_LOWER = re.compile(_ADDRESS.pattern)
"""``_ADDRESS`` without ``IGNORECASE``, for lower-cased ASCII text: the same matches (its letters
are lower-case ASCII), ~2x faster."""
_OVERRIDE_OBJECT = (
    r"(?:\s+[\w'’-]+){0,4}?\s+(?:instructions?|directions?|task|request|rules|guidelines|prompt|"
    r"assignment|above|previous|prior|earlier|preceding|everything|all else|the rest)\b"
)
_OVERRIDE = re.compile(
    r"^\W*(?i:(?:please|now|so|ok|okay|also|and|but|nevermind[^.!?]{0,20}?|stop)[,.!]?\s+)?"
    r"(?i:ignore|disregard|forget|drop|discard|skip|abandon|cancel|override|set aside|never ?mind|"
    rf"stop following)\b(?i:{_OVERRIDE_OBJECT})"
    r"|^\W*(?i:(?:\[?\w+\]?\s*)?new (?:priority |overriding |important )?instructions?)\b"
    # a capitalised override verb in mid-sentence starts a new sentence without punctuation
    r"|(?<=\s)(?:Ignore|Disregard|Forget|Drop|Discard|Abandon|Cancel|Override|Nevermind|Never mind)\b"
    rf"(?i:{_OVERRIDE_OBJECT})",
)


def data_part(text: str, role: str) -> str | None:
    """The data inside one message text (see the module docstring), or ``None`` when the message
    is only a request. ``role``: the message role (``tool`` and ``function`` are data)."""
    if role in ("tool", "function"):
        return text
    if any(hint in text for hint in _DELIMITER_HINTS):
        parts = [m.group(g) for m in _DELIMITED.finditer(text) for g in _CONTENT_GROUPS if m.group(g)]
        if parts:
            return "\n".join(parts)
    end = _FRAME_END.search(text, 0, 250)
    if end is not None and end.group() != "\n" and _TASK_WORD.search(text, 0, end.start()):
        rest = text[end.end() :]
        if len(rest.strip()) >= 20:
            return rest
    if len(text) >= 300 and "\n" in text:
        paragraphs = _PARAGRAPHS.split(text.strip())
        if len(paragraphs) >= 2:
            return "\n\n".join(paragraphs[1:])
    task = _TASK_FIRST.match(text)
    if task is not None and len(task.group(1).strip()) >= 20:
        return task.group(1)
    return None


def candidate_sentences(data: str) -> list[str]:
    """The instruction-like sentences of ``data`` (at most ``MAX_CANDIDATES``, in order; a
    sentence is cut at 400 characters)."""
    out: list[str] = []
    ascii_only = data.isascii()
    for sentence in _SENTENCE.split(data):
        s = sentence.strip()
        if len(s) >= 12 and (_CUE_LOWER.search(s.lower()) if ascii_only else _CUE.search(s)):
            out.append(s[:400])
            if len(out) >= MAX_CANDIDATES:
                break
    return out


def directive_in_data(sentence: str) -> str | None:
    """``"addresses_model"`` or ``"override"`` when a data sentence matches a rule, else
    ``None``."""
    if (
        _ADDRESS_LOWER.search(sentence.lower()) if sentence.isascii() else _ADDRESS.search(sentence)
    ) is not None:
        return "addresses_model"
    if _OVERRIDE.search(sentence):
        return "override"
    return None
