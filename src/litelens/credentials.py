"""Credentials: recognising them by name and by shape, and taking them out of text, URLs and values.

A credential can reach a call record in many places: a metadata key (`api_key`, `x-api-key`), a header
LiteLLM logs, a provider key echoed in an error message, a signed URL's query, `user:password@` in an
`api_base`. This module says what is a credential -- a key *named* like one (`is_secret_key`), a string
*shaped* like one (`SECRET_TEXT`: provider keys, bearer tokens, JWTs, `password=...` pairs) -- and
replaces it, keeping what says which kind it was (`Bearer [REDACTED]`, `?api_key=[REDACTED]`).

The call record (`litelens.record.scrub`), the collector's ingest of OTLP spans, and the `redact`
processor's `secret` kind all use these same rules. Standard library only: part of the zero-dependency
core.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Metadata and header keys whose values are credentials, wherever they appear: the name ends in one of
# these words, after a separator or a camelCase hump (`db_password`, `dbPassword`, `HF_TOKEN`). A bare
# `token` is not one: OpenAI's logprobs list each `token` of the answer.
_SECRET_KEY = re.compile(
    r"(?:^|[_\-.]|(?-i:(?<=[a-z0-9])(?=[A-Z])))"
    r"(?:api[_\-]?key|apikey|authorization|x[_\-]api[_\-]key|bearer|credentials?|jwt|cookie|set[_\-]?cookie|"
    r"(?:auth|access|refresh|id|session|security|api|bot|app|oauth|github|gh|hf|slack|personal[_\-]?access)"
    r"[_\-]?token|"
    r"secret|client[_\-]?secret|"
    r"(?:secret|access|private|signing|encryption|subscription|master|account)[_\-]?key|"
    r"password|passwd|pwd|pass|passphrase)$",
    re.IGNORECASE,
)

# A secret-named key followed by `=` or `:` in text: `.env` lines, config snippets and headers echoed in
# error messages ("x-api-key: 0a1b...", "{'password': 'hunter2'}", "AWS_SECRET_ACCESS_KEY=..."). The
# match starts at the `=` or `:`; a look-behind per name (fixed width each, so both spellings of
# `api_key`/`apikey` are listed) checks the name, right before it or before one quote or space.
_ASSIGN_NAMES = (
    *(f"{stem}{sep}key" for stem in ("api", "secret", "access", "private", "subscription", "account", "master")
      for sep in ("", "[_\\-]")),
    "[_\\-]token", "(?-i:[a-z]T)oken", "password", "passwd", "pwd", "passphrase", "secret", "authorization",
    "cookie",
)  # fmt: skip
# Right before the `=` or `:`, or before one quote or space, or an escaped quote: JSON quoted inside a
# JSON string (an error message echoing a request body) reads `{\"api_key\": \"...\"}`.
_ASSIGN_ENDS = ("", "[\"' ]", '\\\\"')
_ASSIGN_NAME = "|".join(f"(?<=(?i:{name}){end})" for name in _ASSIGN_NAMES for end in _ASSIGN_ENDS)
_COOKIE_NAME = "|".join(f"(?<=(?i:cookie){end})" for end in _ASSIGN_ENDS)
# A quoted name: JSON or a dict's repr, where a quoted value is a string whatever it holds.
_QUOTED_NAME = "|".join(f"(?<=(?i:{name}){end})" for name in _ASSIGN_NAMES for end in ("[\"']", '\\\\"'))
# The value: no space, quote or bracket (so `api_key: Optional[str]` is code, not a key), at least 6
# characters and a digit (so `password=os.environ...` and a placeholder are left alone). A backslash
# before a closing quote is the escape of that quote, not part of the value.
_ASSIGN_VALUE = r"(?=[^\s\"'&,;<>()\[\]{}]*[0-9])(?:[^\s\"'&,;<>()\[\]{}\\]|\\(?![\"'])){6,}"
# A cookie header's value: `name=value` pairs, which hold a session however few digits they have, and
# the attributes after them (`Set-Cookie: sid=...; Path=/; HttpOnly`). A value may hold a "&", but not
# the "&" and NUL that `redact` joins strings with.
_COOKIE_OCTET = r"(?:[^\s\"';,\\&\x00]|&(?!\x00))"
_COOKIE_VALUE = rf"[^\s\"';,\\&\x00=]+={_COOKIE_OCTET}*(?:;[ \t]*{_COOKIE_OCTET}+)*"
# A quoted name's quoted value, digits or not (`{"password": "correct horse"}` in an error message):
# up to the same quote, on one line.
_QUOTED_VALUE = r"(?P<quote>\\?[\"'])(?P<quoted>(?:(?!(?P=quote))[^\r\n&\x00]|&(?!\x00))+)(?=(?P=quote))"


# Where such a match may start: a `=` or `:` after the last two letters of one of those names, which the
# regex engine finds from the literal character in C. Keep in step with _ASSIGN_NAMES.
def _assign_mark(sep: str) -> str:
    ends = "|".join(f"(?<=(?i:ey|en|rd|wd|se|et|on|ie){end}{sep})" for end in _ASSIGN_ENDS)
    return f"{sep}(?:{ends})"


# Strings shaped like credentials: provider keys, bearer tokens, keys in URLs. Used on the places where
# LiteLLM or a provider may echo a credential (error messages, URLs, metadata, headers), not on content:
# redacting content is the `litelens.pipeline.redact` processor's job.
_SECRET_TEXT = re.compile(
    r"(?:\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}"  # OpenAI / Anthropic / LiteLLM virtual keys
    r"|\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}"
    r"|\bBasic\s+[A-Za-z0-9+/=]{8,}"
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API key
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack tokens
    r"|\bhf_[A-Za-z0-9]{20,}"  # Hugging Face tokens
    r"|\bll_[A-Za-z0-9_\-]{16,}"  # litelens project keys
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"  # JWT: base64 of '{"' twice
    r"|\bgithub_pat_[A-Za-z0-9_]{22,}"  # GitHub fine-grained tokens
    r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe secret and restricted keys
    r"|\bwhsec_[A-Za-z0-9+/=]{20,}"  # Stripe (and Svix) webhook signing secrets
    r"|\bxapp-[0-9]-[A-Za-z0-9\-]{10,}"  # Slack app-level tokens
    r"|\bglpat-[A-Za-z0-9_\-]{20,}"  # GitLab tokens
    r"|\bnpm_[A-Za-z0-9]{36}\b"  # npm tokens
    r"|(?i:(?<=[?&;])(?:x-(?:amz|goog)-)?"  # keys in URL queries, S3 and GCS signed URLs too
    r"(?:api[_\-]?key|key|(?:access|refresh|id|session|private|auth|security)?[_\-]?token|client[_\-]?secret"
    r"|sig|signature|password|passwd|pwd|secret|auth)=)[^&;\s\"'#]+"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[^&]*?(?:-----END [A-Z ]*PRIVATE KEY-----|(?=&|\Z))"  # PEM
    # user:password@ in a URL; no NUL in it, so that it never runs across the "&" and NUL that `redact`
    # joins strings with, into the next string ("https://:" then "ann+x@mail.example.com")
    r"|(?<=://)[^\s/?#@:\"'<>\x00]*:[^\s/?#@\"'<>\x00]+(?=@)"
    # A name and its value; at the many starts that are no "=" or ":", one test skips all the names' tests.
    r"|(?=[=:])(?:"
    rf"(?:{_COOKIE_NAME})[=:][ \t]*(?:\\?[\"'])?(?P<cookie>{_COOKIE_VALUE})"
    rf"|(?:{_ASSIGN_NAME})[=:][ \t]*(?:\\?[\"'])?(?:(?i:bearer|basic|token)[ \t]+)?(?P<value>{_ASSIGN_VALUE})"
    rf"|(?:{_QUOTED_NAME})[=:][ \t]*{_QUOTED_VALUE}"
    r")"
    r")"
)

SECRET_TEXT = _SECRET_TEXT
"""The credential-shape regex, public so `litelens.pipeline.redact` applies the very same shapes."""

REDACTED = "[REDACTED]"


@functools.lru_cache(maxsize=4096)  # the same few metadata and header names come with every call
def is_secret_key(name: str) -> bool:
    """True for a mapping key whose value is a credential (`Authorization`, `x-api-key`, `password`...)."""
    return bool(_SECRET_KEY.search(name))


def is_url_credential(name: str) -> bool:
    """True for a URL query parameter whose value is a credential: a secret-named one, or the short
    names signed URLs and gateways use (`?key=`, `?sig=`, `?token=`)."""
    return is_secret_key(name) or name.lower() in ("key", "sig", "token")


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with known secret values and credential-shaped strings replaced by `[REDACTED]`."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return sub_secrets(text, REDACTED)


# Where a match of _SECRET_TEXT can start (keep in step with it; a test checks every shape).
# Each regex begins with one literal character, and a look-behind or look-ahead confirms the letters
# around it, so a date's "-" or a word's "_" never costs a step in Python. `str.find` (memchr speed)
# says where the first of those characters is, and the regex scans from there, or not at all. Each
# comes with the distances back from the match to where a credential may start: trying a start that is
# not one costs a failed match, missing one would leak.
_SECRET_STARTS = (
    # sk-, rk-, pk-; xoxb-..., xapp-; glpat-; a PEM private key
    (
        "-",
        re.compile(
            r"-(?:(?<=\b[srp]k-)|(?<=[bpsr]-)(?<=\b(?:xox[abprs]|xapp)-)|(?<=t-)(?<=\bglpat-)|(?=----BEGIN ))"
        ),
        (5, 4, 2, 0),
    ),
    # hf_, ll_, sk_live_/rk_test_; ghp_..., npm_; whsec_; github_pat_
    (
        "_",
        re.compile(
            r"_(?:(?<=\b(?:hf|ll|sk|rk)_)|(?<=\b(?:gh[pousr]|npm)_)|(?<=[cb]_)(?:(?<=\bwhsec_)|(?<=\bgithub_)))"
        ),
        (6, 5, 3, 2),
    ),
    ("B", re.compile(r"B(?=earer|asic)"), (0,)),
    ("A", re.compile(r"A(?=KIA|Iza)"), (0,)),
    ("J", re.compile(r"J(?<=\beyJ)"), (2,)),  # a JWT
)
# A secret-named key before a "=" or ":" (`password=...`, `x-api-key: ...`), where the match starts.
_ASSIGN_EQ = re.compile(_assign_mark("="))
# The same for ":", which also finds the "://" of a URL, whose user info starts 3 characters on.
_ASSIGN_COLON_OR_URL = re.compile(rf"{_assign_mark(':')}|:(?=//)")
# Key names in URL queries come right after "?", "&" or ";" and before "="; the longest _SECRET_TEXT
# knows is "x-amz-security-token".
_MAX_PARAM_NAME = 20


def _secret_starts(s: str) -> list[int]:
    """Every place in `s` where a match of `_SECRET_TEXT` may start (and some where none does).

    The credential regex is an alternation of `\\b`-anchored shapes, which the regex engine tries at
    every position (a few µs per hundred characters, far more with the name-before-value shapes). Every
    match starts at a few letters before a `-` (`sk-`, `xoxb-`) or `_` (`ghp_`, `sk_live_`), at `Bearer`,
    `Basic`, `AKIA`, `AIza`, `eyJ`, `-----BEGIN`, right after the `?`/`&`/`;` before a `name=`, at the
    `=` or `:` after a secret-named key, or after a `://`. `_SECRET_STARTS` and the marks for `=` and
    `:` find those places in C, so the text is scanned a few times at memchr-like speed.
    """
    starts: list[int] = []
    # `char in s` first: most texts lack most of these characters, and `in` costs half a `find`, whose
    # arguments are parsed the slow way.
    for char, mark, backs in _SECRET_STARTS:
        if char in s:
            # `search` first: in most texts the mark never matches, and a `finditer` that finds
            # nothing still builds a scanner and an iterator.
            first = mark.search(s, s.find(char))
            if first is not None:
                for hit in mark.finditer(s, first.start()):
                    starts += [max(hit.start() - back, 0) for back in backs]
    if "=" in s:
        i = s.find("=")
        starts += [hit.start() for hit in _ASSIGN_EQ.finditer(s, i)]
        while i != -1:
            lo = max(i - _MAX_PARAM_NAME - 1, 0)
            q = max(s.rfind("?", lo, i), s.rfind("&", lo, i), s.rfind(";", lo, i))
            if q != -1:
                starts.append(q + 1)
            i = s.find("=", i + 1)
    if ":" in s:
        for hit in _ASSIGN_COLON_OR_URL.finditer(s, s.find(":")):
            i = hit.start()
            starts += (i, i + 3)  # a name before it, or user:password@ after "://"
    return starts


def _secret_matches(s: str, starts: list[int]) -> Iterator[re.Match[str]]:
    """The matches `_SECRET_TEXT.finditer(s)` yields, found by trying the regex only at `starts` (what
    `_secret_starts(s)` says). Leftmost first and never overlapping, as `finditer` and `sub` see them."""
    done = 0
    match = _SECRET_TEXT.match
    for start in sorted(set(starts)):
        if start >= done:
            m = match(s, start)
            if m is not None:
                yield m
                done = m.end()


def has_secret(text: str) -> bool:
    """True when `text` holds a credential-shaped string (what `scrub_text` would replace)."""
    starts = _secret_starts(text)
    return bool(starts) and next(_secret_matches(text, starts), None) is not None


def sub_secrets(text: str, placeholder: str) -> str:
    """`text` with every credential-shaped string replaced by `placeholder`; `text` itself if none.

    What says what the credential was is kept: the name of a URL parameter or of a `name=value` /
    `name: value` pair, and the scheme of an Authorization value (`Bearer [REDACTED]`).
    """
    starts = _secret_starts(text)
    if not starts:  # most texts: no place a credential may start, and no generator to set up for it
        return text
    parts: list[str] = []
    done = 0
    for m in _secret_matches(text, starts):
        parts += (text[done : m.start()], secret_replacement(m, placeholder))
        done = m.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def secret_replacement(match: re.Match[str], placeholder: str) -> str:
    """What one match of `SECRET_TEXT` becomes (see `sub_secrets`)."""
    found = match.group(0)
    value = max(match.start("value"), match.start("cookie"), match.start("quoted"))
    if value != -1:  # name=value, name: value, cookie: pairs: keep the separator, a quote, a scheme
        return found[: value - match.start()] + placeholder
    if found.startswith(("Bearer", "Basic")):  # keep the scheme: it says what kind of credential it was
        return found.split()[0] + " " + placeholder
    if match.string.startswith("://", match.start() - 3):  # user:password@, which may hold a "="
        return placeholder
    eq = found.find("=")
    return found[: eq + 1] + placeholder if eq > 0 else placeholder


_URL_SPECIAL = re.compile(r"[@?#\s\x00-\x1f]")


def scrub_url(url: str | None) -> str | None:
    """A URL without user info and without credential-looking query parameters."""
    if not url:
        return url
    if url.startswith(("http://", "https://")) and not _URL_SPECIAL.search(url):
        return url  # nothing to remove and nothing urlsplit would normalise: the usual api_base
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub_text(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if is_url_credential(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret_values(api_key: Any, *headers: Any) -> list[str]:
    """The exact secret values one call carried: its api_key and its credential headers' values.

    A provider that rejects a key may echo it whole in its error ("Incorrect API key provided: ..."),
    and a key of no known shape (a gateway's, an Azure key's 32 hex digits) is then only recognised by
    its value. A header's value is taken whole and without its scheme (`Bearer xyz` -> `xyz`), a
    cookie's by each of its values. Values under 6 characters are left out: replacing them would
    mangle ordinary words. Longest first, so a whole `Bearer xyz` goes before the `xyz` inside it.
    """
    found = [api_key]
    for mapping in headers:
        if not isinstance(mapping, Mapping):
            continue
        for name, value in mapping.items():
            if not isinstance(value, str) or not is_secret_key(str(name)):
                continue
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                found.append(token.strip())
            if "=" in value:  # cookie pairs: `sid=...; theme=...`
                found += [pair.partition("=")[2].strip() for pair in value.split(";")]
    return sorted({s for s in found if isinstance(s, str) and len(s) >= 6}, key=len, reverse=True)


def endpoint_secrets(endpoint: str | None, *keys: str | None) -> list[str]:
    """The secret values a request to `endpoint` carries, for scrubbing what an answer echoes back: the
    API `keys`, the URL's password, and every value of its query, as written and decoded.

    The endpoint's query goes along on every request for a gateway in front of the server, which takes
    its token there under whatever name it likes (`?token=`, `?code=`); a gateway's error page that
    echoes the request URL then holds it, so each of its values counts, not only credential-named ones.
    Values under 6 characters are left out, as in `secret_values` (a credential-named one is still
    caught by its shape, `token=abc`)."""
    found: list[str | None] = list(keys)
    try:
        parts = urlsplit(endpoint or "")
    except ValueError:  # not a URL (a bad IPv6 literal): nothing of it reached a server
        parts = urlsplit("")
    # `user:password@`, or a token given as the user alone (`https://TOKEN@gateway`).
    found.append(parts.password or parts.username)
    for pair in parts.query.split("&"):
        found += [pair.partition("=")[2], *(v for _, v in parse_qsl(pair, keep_blank_values=True))]
    return sorted({s for s in found if s and len(s) >= 6}, key=len, reverse=True)


def shown_url(url: str, secrets: Iterable[str]) -> str:
    """`url` as a message may print it: no credential-named query value or password (`scrub_url`), and
    none of `secrets` (`endpoint_secrets`: a gateway's token under any name, `?code=`)."""
    return scrub_text(scrub_url(url) or url, secrets)


def masked(value: Any, placeholder: str = REDACTED) -> Any:
    """What a credential-named key's value becomes: the placeholder, or a list of it for a list (a header
    as OpenTelemetry's conventions write it), so that the value keeps its type."""
    return [placeholder] * len(value) if isinstance(value, (list, tuple)) else placeholder


def scrub_value(value: Any, secrets: Iterable[str] = (), _depth: int = 0) -> Any:
    """A copy of a JSON-like value with credential keys removed and secret strings redacted."""
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if _depth > 12:
        return "<too deep>"
    if isinstance(value, Mapping):
        return {
            str(k): (masked(v) if is_secret_key(str(k)) else scrub_value(v, secrets, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub_value(v, secrets, _depth + 1) for v in value]
    # A pydantic model is encoded as its fields later on: scrub those fields, not the opaque object.
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            fields = dump()
        except Exception:
            return value  # the encoder will mark it as unserializable
        return scrub_value(fields, secrets, _depth) if isinstance(fields, Mapping) else value
    return value
