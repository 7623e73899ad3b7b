"""Finding and replacing personal data and secrets in one string: the text side of `redact`.

`TextRedactor(kinds, patterns, placeholder)` returns its input unchanged (the same object) when there is
nothing to replace, so callers can tell "nothing found" by identity. Cards are Luhn-checked and IBANs
mod-97-checked, so order numbers and invoice ids stay readable.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterator

from litelens import credentials

__all__ = ["KINDS", "TextRedactor", "iban_ok", "luhn_ok"]

KINDS = ("email", "phone", "card", "iban", "ip", "secret")
"""The built-in kinds `redact` knows. `LITELENS_REDACT=all` means all of them."""

SAME = "\x00same"
"""A cache entry meaning "nothing to replace": the input itself is returned."""

# A Python regex scans text at several nanoseconds per character, so none of these runs over a whole
# text unless it starts with a character class the engine can skip ahead by; the others run only on
# short spans, or where a cheap `find` says a match may start.
# The local part may hold an apostrophe between letters (o'neil@...); the "@" may be URL-encoded as
# "%40" (?email=jane%40example.com). Name and domain may hold the letters of Latin, Greek and Cyrillic
# script (josé@correo.es, müller@bücher.de, иван@пример.рф), not those of scripts written without
# spaces, which would take the words before an address for part of it.
_EMAIL_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0388-\u03ff\u0400-\u04ff"
_EMAIL_ALNUM = f"[0-9{_EMAIL_LETTERS}]"
_EMAIL_LOCAL = f"(?:[0-9{_EMAIL_LETTERS}._%+\\-]|(?<={_EMAIL_ALNUM})'(?={_EMAIL_ALNUM}))+"
_EMAIL_DOMAIN = (
    # Not an image for high-density screens: "logo@2x.png", "bg@1.5x.webp"
    r"(?![0-9](?:\.[0-9]+)?x\.(?:png|jpe?g|gif|webp|avif|svg)\b)"
    f"{_EMAIL_ALNUM}(?:[0-9{_EMAIL_LETTERS}\\-]*{_EMAIL_ALNUM})?"
    f"(?:\\.[0-9{_EMAIL_LETTERS}\\-]+)*\\.[{_EMAIL_LETTERS}]{{2,24}}"
)
_EMAIL = re.compile(f"{_EMAIL_LOCAL}@{_EMAIL_DOMAIN}")
_EMAIL_ENCODED = re.compile(f"{_EMAIL_LOCAL}%40{_EMAIL_DOMAIN}")
# The spaces that group digits: typography and word processors use the no-break spaces (U+00A0, U+202F)
# and the thin space (U+2009) between the groups of a card, phone or IBAN as often as a plain space.
_GAP = " \u00a0\u2009\u202f"
# The dashes likewise: "-", and the hyphen, non-breaking hyphen (which language models write), figure
# dash and en dash (U+2010-2013).
_DASHES = "-\u2010\u2011\u2012\u2013"
_DASH = "\\" + _DASHES  # in a character class, with its "-" escaped
_GAP_OR_DASH = str.maketrans("", "", _GAP + _DASHES)
_NOT_DIGITS = _GAP + "().+" + _DASHES  # what a span holds besides digits
_NOT_DIGITS_ASCII = b" ().+-"  # ... when it is ASCII
# A run of the characters phone numbers, card numbers and IPv4 addresses are made of, starting where one
# could start. The first item is a character class, which lets the regex engine skip ahead in C.
# Short runs ("3 items") are rejected inside the regex engine, not in Python; the second branch keeps
# the IBANs whose check digits are followed by letters, "GB29NWBK..." or, as printed, "GB29 NWBK ...".
_SPAN = re.compile(f"[+(0-9](?:[0-9{_GAP}().+{_DASH}]{{6,}}|(?<=[A-Z]{{2}}[0-9])[0-9](?=[{_GAP}]?[A-Z]))")
# The same spans, found faster in an ASCII text: the regex engine looks for a character class one
# character at a time through a slow generic test, but for a single literal character with a tight loop.
# So in a byte copy of the text where every character a span can start with became "0" (one C pass),
# `_SPAN` becomes a regex starting with the literal "0", at the very same positions. (Its IBAN branch may
# also stop at a "+" or "(" after two capitals; such a one- or two-character span is skipped as short.)
# A text holding a no-break or thin space or a dash other than "-" is not ASCII, so takes `_SPAN`.
_SPAN_STARTS_TO_ZERO = bytes.maketrans(b"0123456789+(", b"000000000000")
_SPAN_ASCII = re.compile(rb"0(?:[0 ().\-]{6,}|(?<=[A-Z]{2}0)0(?= ?[A-Z]))")
_IPV4 = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])")
_CARD = re.compile(f"(?<![0-9])[0-9](?:[{_GAP}{_DASH}]?[0-9]){{12,18}}(?![0-9])")
# Written with "[ .\-]" between groups; `_PHONE` takes any of `_GAP` and `_DASH` there.
_PHONE_SHAPES = (
    r"(?<![0-9+])(?:"
    r"\+[0-9]{7,15}"  # E.164, compact
    # International, "+" or "00" and a country code: groups of up to 8 digits ("+49 30 1234567",
    # "+91 98765 43210"), the trunk "0" in brackets ("+33 (0)1 23 45 67 89")
    r"|(?:\+|00(?=[1-9]))[0-9]{1,3}[ .\-]?(?:\(0\)[ .\-]?)?"
    r"(?:\([0-9]{1,5}\)[ .\-]?|[0-9]{1,5}[ .\-])(?:[0-9]{2,8}[ .\-]){0,4}[0-9]{2,8}"
    # The same, the national number in one run after the country code ("+91 9876543210", "+1-4155552671",
    # "+44(0)2079460958")
    r"|(?:\+|00(?=[1-9]))[0-9]{1,3}(?:[ .\-]|[ .\-]?\(0\)[ .\-]?)[0-9]{6,12}"
    # National, in groups of 2-4 ("(415) 555-2671", "01 23 45 67 89")
    r"|(?:\([0-9]{1,4}\)[ .\-]?|[0-9]{1,4}[ .\-])(?:[0-9]{2,4}[ .\-]){0,3}[0-9]{2,4}"
    # National after a trunk "0", one longer group ("030 1234567", "07700 900123", "(089) 1234567")
    r"|(?:\(0[1-9][0-9]{0,4}\)[ .\-]?|0[1-9][0-9]{0,4}[ .\-])[0-9]{3,8}(?:[ .\-][0-9]{2,8})?"
    # A bracketed area code, then a mobile's five-digit group ("(11) 91234-5678", "(11) 912345678")
    r"|\([0-9]{2,4}\)[ .\-]?[0-9]{4,5}[ .\-]?[0-9]{4}"
    r")(?![0-9])"
)
_PHONE = re.compile(_PHONE_SHAPES.replace("[ .\\-]", f"[{_GAP}.{_DASH}]"))
# A date (year first, or day and month in either order first) and a space or "T" before its time.
_DATE_THEN_TIME = re.compile(
    f"(?:[12][0-9]{{3}}[{_DASH}./][01]?[0-9][{_DASH}./][0-3]?[0-9]"
    f"|[0-3]?[0-9][{_DASH}./][0-3]?[0-9][{_DASH}./](?:[12][0-9])?[0-9]{{2}})"
    f"[{_GAP}T][0-2]?[0-9]\\Z"
)
_DATE = re.compile(
    f"[0-9]{{4}}[{_DASH}.][0-9]{{1,2}}[{_DASH}.][0-9]{{1,2}}|[0-9]{{1,2}}[{_DASH}.][0-9]{{1,2}}[{_DASH}.][0-9]{{2,4}}"
)
# A decimal number ("1234.5678", the "122.4194" of "-122.4194") or a range of years ("2019-2023"):
# digits enough for a phone, but far more common in prompts than a phone number written that way.
_DECIMAL_OR_YEARS = re.compile(f"[0-9]+\\.[0-9]+|(?:19|20)[0-9]{{2}}[{_DASH}](?:19|20)[0-9]{{2}}")
_THOUSANDS = re.compile(f"[0-9]{{1,3}}(?:([{_GAP}.])[0-9]{{3}})(?:\\1[0-9]{{3}})*")
_DIGITS = re.compile(r"[0-9]+")
_CARD_LAYOUTS = frozenset({(4, 4, 4, 4), (4, 6, 5), (4, 6, 4)})  # how card numbers are grouped in print
_IBAN = re.compile(f"[A-Z]{{2}}[0-9]{{2}}(?:[{_GAP}]?[A-Z0-9]){{11,30}}")
# Spans `_span` returns unchanged, told by one match (a span holds only digits and `_NOT_DIGITS`):
# - one run of at most 12 digits, then no digit ("355544918", a ticket's "13528. "): a phone shape
#   needs two runs of digits or a "+" before its one, a card 13 digits, an IPv4 address four runs;
# - a group of 1-4 digits not starting with "0", one gap, dot or dash, a run of 5-8 digits, then no
#   digit ("2024-334083", an order number): at most 12 digits (no card), two runs (no IPv4 address),
#   no "+" or "(" before the second run, no trunk "0", and national groups after a first group of 1-4
#   digits are 2-4 digits long; the second run, even one starting "0" or "00", has no digits after it,
#   which a phone starting there would need;
# - two runs of at most 3 digits each (an amount's "252.50 "): fewer than 7 digits, which `_span`
#   turns away at once, as two runs are no IPv4 address.
# Possessive quantifiers (Python 3.11+) keep a failing alternative from backtracking into a run of
# digits, which would only fail again; without them the same spans match, a little slower.
_POSSESSIVE = "+" if sys.version_info >= (3, 11) else ""
_PLAIN_NUMBER = re.compile(
    f"[0-9]{{1,12}}{_POSSESSIVE}[^0-9]*{_POSSESSIVE}"
    f"|[1-9][0-9]{{0,3}}{_POSSESSIVE}[{_GAP}.{_DASH}][0-9]{{5,8}}{_POSSESSIVE}[^0-9]*{_POSSESSIVE}"
    f"|[0-9]{{1,3}}{_POSSESSIVE}[^0-9]+{_POSSESSIVE}[0-9]{{1,3}}{_POSSESSIVE}[^0-9]*{_POSSESSIVE}"
)
_IP6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
# Every built-in kind needs one of these characters, except the credential shapes that may be all
# letters after their prefix (checked with `in`). A character class lets the regex engine scan in C,
# so most short strings ("assistant", "stop") and digit-free prose leave after one cheap search.
_LOUD = re.compile(r"[0-9@:=_\-]")
_IP6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9]+)?(?![\w:])")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (and 9 in 10 random numbers do not)."""
    if len(set(digits)) == 1:  # 0000 0000 0000 0000 passes Luhn but is nobody's card
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check: a random 15-34 character string passes it about once in 97 tries."""
    compact = "".join(iban.split())
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ipv4_ok(text: str) -> bool:
    """An IPv4 address of a host: the loopback, "any" and netmasks (`--host 0.0.0.0`, a local
    `http://127.0.0.1:4000` api_base, `255.255.255.0`) name no one, and are kept readable."""
    parts = [int(part) for part in text.split(".")]
    return all(part <= 255 for part in parts) and parts[0] not in (0, 127, 255)


def _ssh_remote(s: str, m: re.Match[str]) -> bool:
    """True for the `git@host` of a Git SSH remote (`git@github.com:org/repo.git`,
    `ssh://git@github.com/org/repo`): the address of a service's Git user, not of a person. Only the
    user `git` followed by a path counts, so `jane@host:...` and an address ending a sentence with a
    colon stay redacted."""
    end = m.end()
    return (
        s.startswith("git@", m.start())
        and s[end : end + 1] in (":", "/")
        and end + 1 < len(s)
        and not s[end + 1].isspace()
        and s[end + 1] != "&"  # the separator of `redact`'s joined scan: the string ended there
    )


_ROW_GAPS = frozenset(_GAP + "." + _DASHES)
_DIGIT_RUN = re.compile(r"\d+")


def _in_a_row(m: re.Match[str]) -> bool:
    """True when a national number's match is one stretch of a longer row of numbers ("12 34 56 78 90 11",
    a table's cells): another group of digits follows or precedes it past a single gap. A trunk "0" (or
    a bracketed area code) marks a phone even there ("01 23 45 67 89 01 23 45 67 89": two numbers)."""
    s, a, b = m.string, m.start(), m.end()
    if s[a] in "+(" or (s[a] == "0" and s[a + 1 : a + 2] != "0"):
        return False
    # Only a row of short numbers (cells of one or two digits): a phone written in groups of three or
    # four stays one, whatever figure follows it ("415 555 2671 5 days a week").
    if any(len(group) > 2 for group in _DIGIT_RUN.findall(s, a, b)):
        return False
    after = b + 1 < len(s) and s[b] in _ROW_GAPS and s[b + 1].isdigit()
    return after or (a >= 2 and s[a - 1] in _ROW_GAPS and s[a - 2].isdigit())


def _phone_ok(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15:
        return False
    if text[0] == "+":
        return True
    # Dates and grouped amounts are shaped like phone numbers; they are far more common in prompts. So
    # is a timestamp's date and hour ("2024-05-01 10:30", "01.05.2024 10:30").
    return not (
        _DATE.fullmatch(text)
        or _THOUSANDS.fullmatch(text)
        or _DATE_THEN_TIME.match(text)
        or _DECIMAL_OR_YEARS.fullmatch(text)
    )


class TextRedactor:
    """Finds and replaces the configured kinds in one string; returns the same object when nothing matched."""

    def __init__(
        self, kinds: frozenset[str], patterns: list[tuple[re.Pattern[str], str]], placeholder: str
    ) -> None:
        self.kinds = kinds
        self.patterns = patterns
        self.ph = {kind: placeholder.format(kind=kind.upper()) for kind in KINDS}
        self.email = "email" in kinds
        self.secret = "secret" in kinds
        self.ip = "ip" in kinds
        self.numeric = bool(kinds & {"phone", "card", "ip", "iban"})
        self.phone = "phone" in kinds
        self.card = "card" in kinds
        # Nothing built in matches fewer characters ("1.1.1.1", "a@b.co"); user patterns may.
        self.min_len = 0 if patterns else 6
        self.gated = not patterns
        self._spans: dict[str, str] = {}

    def __call__(self, s: str) -> str:
        if len(s) < self.min_len:
            return s
        if (
            self.gated
            and _LOUD.search(s) is None
            and "Bearer" not in s
            and "Basic" not in s
            and "AKIA" not in s
            and "AIza" not in s
            and "eyJ" not in s
        ):
            return s
        return self.scan(s)

    def scan(self, s: str) -> str:
        """Every configured kind replaced in `s` (no short-cuts: the joined scan calls this directly)."""
        out = s
        for pattern, ph in self.patterns:
            out = pattern.sub(ph, out)
        if self.secret:
            out = self._secrets(out)
        if self.email:
            if "@" in out:
                out = self._emails(out, "@", _EMAIL)
            if "%" in out and "%40" in out:  # `in` finds one character at memchr speed, three far slower
                out = self._emails(out, "%40", _EMAIL_ENCODED)
        if self.numeric:  # the span scan is itself the cheapest test for "has a digit"
            out = self._numbers(out)
        if self.ip and ":" in out and _IP6_HINT.search(out):
            out = _IP6.sub(self._ip6, out)
        return out

    def _secrets(self, s: str) -> str:
        """`credentials.SECRET_TEXT` matches replaced, name and scheme kept (see `credentials.sub_secrets`)."""
        return credentials.sub_secrets(s, self.ph["secret"])

    def _emails(self, s: str, sign: str, email: re.Pattern[str]) -> str:
        # An unanchored email regex tries every position of the string; start near each '@' instead.
        parts: list[str] = []
        done = 0
        at = s.find(sign)
        while at != -1:
            # No address holds a space: start after the last one before the "@", not at every one of
            # the 128 characters before it (each a failed try of the regex).
            lo = max(done, at - 128)
            lo = max(lo, s.rfind(" ", lo, at) + 1)
            m = email.search(s, lo, at + 256)
            # A match that ends before this "@" (a Git remote's `git@host`, left as it is) must not
            # hide the address that holds it: look on past it.
            while m is not None and m.end() <= at:
                m = email.search(s, m.end(), at + 256)
            if m is not None and m.start() <= at < m.end() and not _ssh_remote(s, m):
                parts += (s[done : m.start()], self.ph["email"])
                done = m.end()
            at = s.find(sign, max(at + 1, done))
        if not parts:
            return s
        parts.append(s[done:])
        return "".join(parts)

    def _numbers(self, s: str) -> str:
        parts: list[str] = []
        done = 0
        iban = "iban" in self.kinds
        remembered = self._spans.get
        spans: Iterator[re.Match[bytes]] | Iterator[re.Match[str]]
        zeros: bytes | None = None
        if s.isascii():
            zeros = s.encode("ascii").translate(_SPAN_STARTS_TO_ZERO)
            spans = _SPAN_ASCII.finditer(zeros)
        else:
            spans = _SPAN.finditer(s)
        for span in spans:
            a, b = span.span()
            if a < done:
                continue
            # An IBAN starts with two capital letters right before its check digits.
            if iban and a >= 2 and "A" <= s[a - 1] <= "Z" and "A" <= s[a - 2] <= "Z":
                m = _IBAN.match(s, a - 2)
                if m is not None and not (a >= 3 and s[a - 3].isalnum()):
                    cut = self._iban_cut(m.group(0))
                    if cut:
                        parts += (s[done : a - 2], self.ph["iban"])
                        done = a - 2 + cut
                        continue
            if b - a < 7:
                continue
            text = s[a:b]
            # `_in_span`'s cache, looked up here: most spans are dates and amounts seen before, and
            # the call would cost more than the lookup.
            cached = remembered(text)
            if cached is SAME:
                continue
            if cached is None:
                # Order and ticket numbers, amounts: `_span` keeps them, and one match says so at a
                # tenth of its cost. Let go here, without the call or a place in the cache, as such
                # numbers seldom come again.
                if _PLAIN_NUMBER.fullmatch(text) is not None:
                    continue
                # Fewer than 7 digits and 3 dots (in the byte copy every digit is a "0", as are "+"
                # and "("): no phone, card or address, as `_span` would say, at a fraction of
                # its cost. Amounts and ticket numbers are such spans.
                if zeros is not None and zeros.count(b"0", a, b) < 7 and zeros.count(b".", a, b) < 3:
                    continue
                new = self._in_span(text)
            else:
                new = cached
            if new is not text:
                parts += (s[done:a], new)
                done = b
        if not parts:
            return s
        parts.append(s[done:])
        return "".join(parts)

    def _iban_cut(self, text: str) -> int:
        """Length of the longest prefix of `text`, ending at a group boundary, that is a valid IBAN."""
        ends = [len(text)] + [i for i in range(len(text) - 1, 14, -1) if text[i] in _GAP]
        for end in ends:
            if iban_ok(text[:end]):
                return end
        return 0

    def _in_span(self, text: str) -> str:
        # Dates, amounts and the like recur from record to record: remember what each span became.
        cached = self._spans.get(text)
        if cached is not None:
            return text if cached is SAME else cached
        # The spans `_span` turns away first are remembered too: dates above all, which recur most.
        out = self._span(text)
        if len(self._spans) >= 4096:
            self._spans.clear()
        self._spans[text] = SAME if out is text else out
        return out

    def _span(self, text: str) -> str:
        # Most spans in prose are dates, amounts, order and ticket numbers: tell them apart by counting
        # before running a regex. The counts bound every match inside the span, so skipping is exact.
        # A span is made of digits, the characters of `_NOT_DIGITS` and, at its end, spaces only.
        core = text.rstrip(_GAP)
        bare = core.isdigit()
        # A bare number of 7-12 digits (an order or ticket number) is no phone (see _PHONE), too short
        # for a card, and holds no dot: the commonest span with digits enough, let go before counting.
        if bare and 7 <= len(core) <= 12:
            return text
        dots = core.count(".")
        if core.isascii():
            # A `count` call per other character costs ~1.4 k instructions (its arguments are parsed
            # the slow way); deleting them all from a byte copy costs about as much as one.
            digits = len(core.encode("ascii").translate(None, _NOT_DIGITS_ASCII))
        else:
            digits = len(core) - sum(map(core.count, _NOT_DIGITS))  # one `count` call per character
        # At least 7 digits (a phone has 7, a card 13) or 3 dots (an IPv4 address may have 4 digits
        # only), and not a date, which holds at most 2 dots and is no phone (see _phone_ok).
        if (digits < 7 and dots < 3) or _DATE.fullmatch(core):
            return text
        out = text
        if self.ip and dots >= 3:
            out = _IPV4.sub(self._ipv4_match, out)
        if digits < 7:
            return text if out == text else out
        if self.card and digits >= 13 and _CARD.search(out):
            out = _CARD.sub(self._card_match, out)
        # A bare run of digits is no phone (see _PHONE), nor is a whole span that is an amount.
        if self.phone and not bare and _PHONE.search(out) and not _THOUSANDS.fullmatch(core):
            out = _PHONE.sub(self._phone_match, out)
        return text if out == text else out

    def _ipv4_match(self, m: re.Match[str]) -> str:
        return self.ph["ip"] if _ipv4_ok(m.group(0)) else m.group(0)

    def _card_match(self, m: re.Match[str]) -> str:
        found = m.group(0)
        return self.ph["card"] if luhn_ok(found.translate(_GAP_OR_DASH)) else self._card_in_run(found)

    def _card_in_run(self, run: str) -> str:
        """`run` with the card number it holds next to other digits replaced: an expiry date or security
        code written right after it ("4111 1111 1111 1111 123"), a quantity before it. Only whole groups
        laid out as cards are printed (4-4-4-4, 4-6-5, 4-6-4, or one ungrouped run) and passing the Luhn
        check are taken for the card, so that rows of numbers stay readable."""
        if run.isdigit():  # one group, checked whole already: an order number
            return run
        groups = [(m.start(), m.end()) for m in _DIGITS.finditer(run)]
        lengths = [end - start for start, end in groups]
        for i, (start, end) in enumerate(groups):
            if 13 <= end - start <= 19:
                stops = [end]
            else:
                # `i + n` within the run: the last three groups alone must not pass for four.
                stops = [
                    groups[i + n - 1][1]
                    for n in (4, 3)
                    if i + n <= len(groups) and tuple(lengths[i : i + n]) in _CARD_LAYOUTS
                ]
            for stop in stops:
                if luhn_ok(run[start:stop].translate(_GAP_OR_DASH)):
                    return run[:start] + self.ph["card"] + run[stop:]
        return run

    def _phone_match(self, m: re.Match[str]) -> str:
        found = m.group(0)
        return self.ph["phone"] if _phone_ok(found) and not _in_a_row(m) else found

    def _ip6(self, match: re.Match[str]) -> str:
        found = match.group(0)
        try:
            address = ipaddress.IPv6Address(found.split("%", 1)[0])
        except ValueError:
            return found
        return found if address.is_loopback or address.is_unspecified else self.ph["ip"]
