"""Amazon's content rules for a seller's reply to a buyer, checked before the reply is queued.

Amazon's Buyer-Seller Messaging refuses a message that contains a link to a site other than
Amazon, an e-mail address, a phone number or HTML markup (buyers are to be reached through Amazon
only). A refused reply comes back minutes later as a failed delivery, after the agent has moved
on; checking here lets the agent fix the text while it is still in front of them.

`reply_violations(text)` lists the passages Amazon would object to, as `PolicyViolation`s sorted by
position. It is a heuristic, tuned for the replies agents really write (order ids, tracking numbers,
prices, dates, "e.g." and amazon.de links everywhere): a false positive costs the agent one
"acknowledge" click, a false negative costs a rejected reply and a buyer who waits. Where the two
pull apart, the comments say which way we leaned and why.

Overlaps: links, e-mail addresses and phone numbers never overlap in the result; when two
candidates overlap, the one that starts first (then the longer one) wins, so an e-mail address in
a link's query string is reported once, as the link. HTML is a separate layer: an `<a href="…">` tag
and a non-Amazon URL inside it are both reported (different spans, two things to fix: the markup
must go, and the link must not come back as plain text). A passage inside an allowed Amazon link
(its path, its query string) is never reported as a link, e-mail address or phone number.

Every pattern is written so that the regex engine cannot backtrack over the same text twice
(possessive quantifiers, no nested open-ended repetition), and loops in Python only walk forward:
a 100,000-character reply is checked in a few tens of milliseconds.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from html.entities import html5 as _HTML5_ENTITIES
from typing import NamedTuple

from tickets.channels import PolicyViolation

__all__ = ["REPLY_GUIDELINES", "reply_violations"]

# Amazon's rules for a reply, in words, for whoever writes one (the AI drafter gives them to the
# model). The first four are what `reply_violations` checks; the rest are Amazon's messaging
# guidelines, which no pattern can check.
REPLY_GUIDELINES = """\
- No e-mail addresses, not even spelled out ("name at example dot com").
- No links or web addresses, except to Amazon's own sites.
- No phone numbers.
- No HTML or other markup: plain text only.
- Never ask for a review or for positive feedback, and offer nothing in exchange for one.
- No marketing, promotions, coupons or links to other products.
- Never ask the buyer to contact the seller outside Amazon."""

LINK = "link"
EMAIL_ADDRESS = "email_address"
PHONE_NUMBER = "phone_number"
HTML = "html"


class _Hit(NamedTuple):
    rule: str
    start: int
    end: int
    message: str


def reply_violations(text: str) -> list[PolicyViolation]:
    """The passages of `text` that Amazon's buyer-seller messaging would refuse, sorted by start."""
    if not text or text.isspace():
        return []
    allowed, links = _links(text)
    emails = _emails(text)
    # Phone numbers are looked for in a copy where every link and e-mail address (allowed or not)
    # is blanked out: digits in a URL path or an address are not a phone number of their own.
    phones = _phones(text, [(h.start, h.end) for h in (*links, *emails)] + allowed)
    content = [h for h in (*links, *emails, *phones) if not _inside_any(h, allowed)]
    hits = _non_overlapping(content)
    taken = {(h.start, h.end) for h in hits}
    hits += [h for h in _non_overlapping(_html(text)) if (h.start, h.end) not in taken]
    hits.sort(key=lambda h: (h.start, h.end))
    return [
        PolicyViolation(rule=h.rule, text=text[h.start : h.end], start=h.start, end=h.end, message=h.message)
        for h in hits
    ]


# --- shared helpers ------------------------------------------------------------------------------


def _shorten(passage: str, limit: int = 60) -> str:
    """The passage as quoted in a message: one line, at most `limit` characters."""
    passage = " ".join(passage.split())
    return passage if len(passage) <= limit else passage[: limit - 1] + "…"


def _non_overlapping(hits: list[_Hit]) -> list[_Hit]:
    """Left to right, the earliest (then longest) candidate wins; candidates overlapping it are dropped."""
    kept: list[_Hit] = []
    last_end = -1
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if hit.start >= last_end:
            kept.append(hit)
            last_end = hit.end
    return kept


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _inside_any(hit: _Hit, allowed: list[tuple[int, int]]) -> bool:
    """Whether `hit` lies entirely inside one of the (merged, sorted) allowed Amazon links.

    Containment, not overlap: `https://evil.com/?r=amazon.de` contains an Amazon host but is still a
    link to evil.com."""
    i = bisect_right(allowed, hit.start, key=lambda span: span[0]) - 1
    return i >= 0 and hit.end <= allowed[i][1]


# --- links ---------------------------------------------------------------------------------------

# Letters and digits of a host name: ASCII plus Latin, Greek and Cyrillic letters (IDN hosts such
# as münchen.de, and "amazon.com" spelt with a Cyrillic "a", which must not pass as Amazon). CJK
# characters are left out on purpose: Japanese text has no spaces, and "詳細はexample.comを" must
# yield the host "example.com", not one glued to the surrounding words.
_LETTERS = "A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff"
_HOST_CHAR = f"[{_LETTERS}-]"
# What may follow a host in a URL: anything but spaces, quotes, angle brackets, and CJK text or
# full-width punctuation (the sentence around a URL in Japanese).
_URL_CHAR = "[^\\s<>\"'`\u00ab\u00bb\u2018-\u201f\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]"

_SCHEME_URL = re.compile(rf"(?<![A-Za-z0-9+\-])(?:https?|ftp)://{_URL_CHAR}++", re.IGNORECASE)
# A bare host ("shop.example.de", "www.example.com", "bit.ly/abc"): a maximal dotted token
# (possessive, so "a.a.a.…" is read once), optionally a port and a path. A token right before or
# after "@" belongs to an e-mail address instead.
_BARE_HOST = re.compile(
    rf"(?<![{_LETTERS}@_\-])(?P<host>{_HOST_CHAR}++(?:\.{_HOST_CHAR}++)++)(?!@)"
    rf"(?P<port>:[0-9]{{1,5}}(?![0-9]))?(?P<path>[/?#]{_URL_CHAR}*+)?"
)

# Bare hosts count as links only with one of these TLDs. A closed list rather than "any two or
# more letters" keeps "e.g.", "z.B.", "v2.1", "29.99", "invoice.pdf", "photo.jpg" and
# "thanks.See you" out. Left out on purpose, because they are also words or file extensions that
# follow a dot in ordinary replies: in ("sign.in"), is, no ("Ref.No."), ro (Italian "N.ro"),
# mo ("Gent.mo"), md, py, sh, zip, mov, pdf-like extensions, and so on. A www. host is a link
# whatever its TLD ("www.example.blog").
_TLDS = frozenset(
    """
    com net org info biz eu de fr it es nl be at ch pl se dk fi pt ie cz sk hu gr lu li uk ca au
    nz jp cn kr ru br mx ar co io me ly to tv cc ai xyz shop store online site app dev club top
    website tech blog live
    """.split()
)

# Amazon's own sites: amazon.<marketplace TLD> and every subdomain (www., smile., sellercentral.),
# plus the short-link domains. Anchored on the whole host so that "amazon.de.evil.com" and
# "evil-amazon.com" are not Amazon.
_AMAZON_HOST = re.compile(
    r"(?:[a-z0-9-]+\.)*"
    r"(?:amazon\.(?:com|de|fr|it|es|nl|se|pl|in|ca|cn|ie|ae|sa|sg|eg|jp"
    r"|co\.uk|co\.jp|co\.za|com\.mx|com\.br|com\.au|com\.tr|com\.be)"
    r"|amzn\.to|amzn\.eu|a\.co)\.?"
)

_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _trim_url_end(text: str, start: int, end: int) -> int:
    """Drop sentence punctuation after a URL, and closing brackets that the URL did not open
    ("(see https://x.com/a)." ends at "a"). Counts are taken once, so this is linear."""
    counts = {c: 0 for c in "()[]{}"}
    for ch in text[start:end]:
        if ch in counts:
            counts[ch] += 1
    while end > start:
        ch = text[end - 1]
        if ch in ".,;:!?*_~":
            end -= 1
        elif ch in _CLOSERS and counts[ch] > counts[_CLOSERS[ch]]:
            counts[ch] -= 1
            end -= 1
        else:
            break
    return end


def _url_host(url: str) -> str:
    """The host of a scheme URL, lower-cased: after any "user@" part (so that
    "https://amazon.com@evil.com" is evil.com, as a browser reads it), without the port."""
    rest = url.split("://", 1)[1]
    authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0]
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):  # IPv6 literal
        return host.lower()
    return host.split(":", 1)[0].lower()


def _is_amazon(host: str) -> bool:
    return _AMAZON_HOST.fullmatch(host.lower()) is not None


def _links(text: str) -> tuple[list[tuple[int, int]], list[_Hit]]:
    """(allowed Amazon link spans, merged and sorted; violating link candidates)."""
    allowed: list[tuple[int, int]] = []
    hits: list[_Hit] = []

    def found(start: int, end: int, host: str) -> None:
        if _is_amazon(host):
            allowed.append((start, end))
        else:
            shown = _shorten(text[start:end])
            hits.append(_Hit(LINK, start, end, f"Links to sites other than Amazon are not allowed: remove {shown}"))

    for m in _SCHEME_URL.finditer(text):
        end = _trim_url_end(text, m.start(), m.end())
        url = text[m.start() : end]
        host = _url_host(url)
        if host and "://" in url:
            found(m.start(), end, host)

    for m in _BARE_HOST.finditer(text):
        host = m["host"]
        labels = host.split(".")
        tld = labels[-1]
        if _is_amazon(host):
            found(m.start(), _trim_url_end(text, m.start(), m.end()), host)
            continue
        if host.lower().startswith("www.") and len(labels) >= 3:
            is_link = tld.isalpha() and len(tld) >= 2
        else:
            # "…sent it.It arrives" / "Danke.De nada": a Title-case TLD with nothing after it is a
            # sentence that starts without a space, not a domain. Costs "Example.Com" (rare).
            sentence_start = tld[:1].isupper() and tld[1:].islower() and not m["path"] and not m["port"]
            is_link = tld.lower() in _TLDS and not sentence_start
        if is_link:
            end = m.end("host") if not (m["path"] or m["port"]) else _trim_url_end(text, m.start(), m.end())
            found(m.start(), end, host)

    return _merge(allowed), hits


# --- e-mail addresses ----------------------------------------------------------------------------

# Local part: the characters people actually use ("+" tags, dots, IDN letters); "!#$&'*/=?^`{|}~"
# are legal but would glue an address to the text before it ("text/john@x.com").
_LOCAL_CHARS = f"{_LETTERS}._%+\\-"
_EMAIL = re.compile(
    rf"(?<![{_LOCAL_CHARS}])(?P<local>[{_LOCAL_CHARS}]++)@(?P<domain>{_HOST_CHAR}++(?:\.{_HOST_CHAR}++)++)"
)
_MAILTO = re.compile(r"mailto:\Z", re.IGNORECASE)

# Spelled-out addresses, the usual ways to slip one past a filter: "john [at] example [dot] com",
# "john(at)example.com", "john @ example.com", "juan arroba gmail punto com", "john at example dot
# com". A plain " at " is ordinary English ("look at it"), so that form is accepted only with a
# spelled-out dot and a known TLD at the end (checked in `_emails`).
_AT_WORDS = "at|ät|arroba|arobase|chiocciola"
_DOT_WORDS = "dot|punkt|point|punto"
_SPELLED_DOT_RE = rf"\s*+[\[({{]\s*+(?:{_DOT_WORDS}|\.)\s*+[\])}}]\s*+|\s++(?:{_DOT_WORDS})\s++|\."
_SPELLED_DOT = re.compile(_SPELLED_DOT_RE, re.IGNORECASE)
_OBFUSCATED_EMAIL = re.compile(
    rf"(?<![{_LOCAL_CHARS}])(?P<local>[{_LOCAL_CHARS}]++)"
    rf"(?:(?P<bracket_at>\s*+[\[({{]\s*+(?:{_AT_WORDS}|@)\s*+[\])}}]\s*+)"
    rf"|(?P<word_at>\s++(?:{_AT_WORDS})\s++)"
    rf"|(?P<spaced_at>\s*+@\s*+))"
    rf"(?P<domain>{_HOST_CHAR}++(?:(?:{_SPELLED_DOT_RE}){_HOST_CHAR}++)++)",
    re.IGNORECASE,
)


def _valid_tld(label: str) -> bool:
    return len(label) >= 2 and label.isalpha()


def _emails(text: str) -> list[_Hit]:
    hits: list[_Hit] = []
    for m in _EMAIL.finditer(text):
        local_start = m.start()
        while local_start < m.start("local") + len(m["local"]) and text[local_start] == ".":
            local_start += 1  # "…john@x.com": the ellipsis is not part of the address
        if local_start == m.end("local"):
            continue
        labels = m["domain"].split(".")
        end = m.end()
        if len(labels) > 2 and labels[-1][:1].isupper() and labels[-1][1:].islower() and _valid_tld(labels[-2]):
            # "john@example.de.Danke": the next sentence started without a space.
            end -= len(labels[-1]) + 1
            labels = labels[:-1]
        if not _valid_tld(labels[-1]):
            continue
        if _MAILTO.search(text, max(0, local_start - 7), local_start):
            local_start -= 7  # "mailto:john@x.com" is one thing to remove
        shown = _shorten(text[local_start:end])
        hits.append(_Hit(EMAIL_ADDRESS, local_start, end, f"E-mail addresses are not allowed: remove {shown}"))

    pos = 0
    while (spelled := _OBFUSCATED_EMAIL.search(text, pos)) is not None:
        # A rejected candidate may hide a real one: in "reach me at john [at] x [dot] com", "me at
        # john.smith" is tried (and refused) first. Resume right after its local part.
        pos = spelled.end("local")
        parts = _SPELLED_DOT.split(spelled["domain"])
        separators = _SPELLED_DOT.findall(spelled["domain"])
        spelled_dot = any(sep != "." for sep in separators)
        tld = parts[-1]
        if spelled["bracket_at"] is not None:
            ok = _valid_tld(tld)
        elif spelled["word_at"] is not None:
            ok = spelled_dot and tld.lower() in _TLDS
        else:
            # "john@example.com" is the plain pattern's; this one wants "john @ example.com" or
            # "john@example[dot]com".
            ok = (spelled["spaced_at"].strip() != spelled["spaced_at"] or spelled_dot) and _valid_tld(tld)
        if ok:
            shown = _shorten(spelled[0])
            hits.append(
                _Hit(
                    EMAIL_ADDRESS,
                    spelled.start(),
                    spelled.end(),
                    f"E-mail addresses are not allowed, even spelled out: remove {shown}",
                )
            )
            pos = spelled.end()
    return hits


# --- phone numbers -------------------------------------------------------------------------------
#
# The hard part is what is NOT a phone number: replies are full of order ids, tracking numbers,
# prices, dates and postal codes. So: (1) blank out ("X") the tokens we know are something else;
# (2) read every maximal run of digits and phone separators that is left; (3) accept a run only
# if it has 7-15 digits (E.164's limit) AND a phone-like shape: a "+" or "00" country code, a
# national trunk "0" followed by groups, the North-American 3-3-4 shape, a Spanish or Italian
# mobile shape, or a "Tel:"-style label right before it. A run is judged whole, never a piece of
# it, so a 22-digit USPS number can't yield a 10-digit "phone number" from its middle.

# Full-width digits, letters and punctuation (Japanese input methods) and the various dashes,
# mapped one character to one character so offsets stay the same.
_PHONE_TRANSLATION = str.maketrans(
    {
        **{chr(0xFF10 + i): str(i) for i in range(10)},
        "\uff0b": "+",
        "\uff08": "(",
        "\uff09": ")",
        "\uff0d": "-",
        "\uff0f": "/",
        "\uff0e": ".",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        **{chr(0xFF21 + i): chr(0x41 + i) for i in range(26)},  # full-width A-Z
        **{chr(0xFF41 + i): chr(0x61 + i) for i in range(26)},  # full-width a-z
        "\uff1a": ":",
        "\u3000": " ",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
    }
)

_NOT_PHONE = [
    # Amazon order ids (and digital orders, D01-…), also when followed by punctuation.
    re.compile(r"(?<![0-9])[0-9]{3}-[0-9]{7}-[0-9]{7}(?![0-9])"),
    # Any token mixing letters and digits: ASINs, UPS 1Z…, JJD…, Royal Mail AB123456789GB,
    # Colissimo 6A…, Hermes H…, RMA-2026-004512, INV-…, SKU-4471-BLK, SW1A 1AA, 14h30, IBANs.
    # Phone numbers never contain letters. (Labels glued to a number, "tel-0301234567", are
    # spared in `_masked_for_phones`.) The lookaheads only run at a token's start and stay
    # inside it: linear.
    re.compile(
        r"(?<![A-Za-z0-9])(?=[A-Za-z0-9_#-]*?[0-9])(?=[A-Za-z0-9_#-]*?[A-Za-z])[A-Za-z0-9]++(?:[-_#][A-Za-z0-9]++)*+"
    ),
    # Prices: a currency sign or code before or after an amount ("€29,99", "29,99 €",
    # "$1,299.00", "EUR 1.299,00", "¥3,980", "3,980円", "£12.50").
    re.compile(
        r"(?:[€$£¥₹]|\b(?:EUR|USD|GBP|JPY|CHF|SEK|PLN|CAD|AUD|MXN|BRL|INR|TRY)\b)\s?"
        r"[0-9]++(?:[ .,'\u2019][0-9]{3})*+(?:[.,][0-9]{1,2})?"
        r"|(?<![0-9])[0-9]++(?:[ .,'\u2019][0-9]{3})*+(?:[.,][0-9]{1,2})?"
        r"\s?(?:[€$£¥₹円]|(?:EUR|USD|GBP|JPY|CHF|Euro?s?)\b)"
    ),
    # Dates: 03.12.2026, 12/03/2026, 2026-12-03, 03.12.26 (not a piece of a longer dotted run
    # such as the French phone style 01.23.45.67.89).
    re.compile(
        r"(?<![0-9])(?<![0-9][./-])(?:[0-9]{1,2}[./-][0-9]{1,2}[./-](?:[0-9]{4}|[0-9]{2})"
        r"|[0-9]{4}[./-][0-9]{1,2}[./-][0-9]{1,2})(?![0-9])(?![./-][0-9])"
    ),
    # Times with a colon (14:30) never join a run anyway (":" is not a phone separator); US ZIP+4
    # codes (02134-1234) would otherwise look like a trunk-prefixed number.
    re.compile(r"(?<![0-9-])[0-9]{5}-[0-9]{4}(?![0-9-])"),
]

# Latin letters, for the lookbehinds below: a label must start a word ("Hotel 030…" has no "tel").
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_LETTERS_HEAD = re.compile(r"[A-Za-z]+")
_LABEL_PREFIXES = frozenset({"tel", "fon", "phone", "fax", "mobil", "mobile", "handy", "cell", "whatsapp"})

# Digits joined by phone separators: spaces, "-", "/", "." (no space around a dot: "1234567. 12"
# is a sentence end), parentheses ("(030) 1234567", "+49 (0)30 …"). A line break or a comma
# always ends a run.
_SEP = r"(?: ?[-/] ?|\.| ?\(|\) ?| )"
_RUN = re.compile(rf"(?<![A-Za-z0-9])(?:\( ?\+ ?|\+ ?\(? ?|\( ?)?[0-9]++(?:{_SEP}[0-9]++)*+")
_GROUPS = re.compile(r"[0-9]+")
# Where a rejected run may hold two numbers: "030 1234567 / 0171 1234567".
_ALTERNATIVES = re.compile(r" [-/] | (?=\()")

# A phone label right before the number: "Tel.:", "Telefonnummer", "phone number:", "call us at",
# "電話" (full-width "TEL" is folded to ASCII first). Specific words only: "phone case
# 4006381333931" must not count.
_PHONE_LABEL = re.compile(
    rf"(?:(?<![{_LATIN}])(?:tel|tél|tlf|fon|phone|telephone|téléphone|telefon|telefono|teléfono|fax|mobile?|mobil"
    r"|handy|cell|cellulare|móvil|movil|portable|whatsapp|call|ring|hotline|rufnummer|llame|llámenos|llamar"
    r"|chiami|chiamaci|chiamare|appelez)"
    r"|電話|携帯)"
    r"\.?(?: ?-? ?(?:no|nr|number|nummer|numéro|numero|número|番号)\.?)?"
    r"(?: (?:us|me|at|on|unter|au|al|a|allo))*"
    r" ?(?::|は)? ?\Z",
    re.IGNORECASE,
)
# An identifier's name right before a number: "Sendungsnummer 01234567890", "Kundennummer …",
# "n° de suivi : …", "Partita IVA 01234567890", "追跡番号 …", "Die Artikelnummer lautet …". Such a
# number is not a phone number unless it has a "+" or a phone label.
_IDENTIFIER_LABEL = re.compile(
    rf"(?:(?<![{_LATIN}])(?:track|sendung|paket|colis|suivi|spedizion|tracciament|seguimiento|env[ií]o|order"
    r"|bestell|commande|ordine|pedido|invoice|rechnung|facture|fattura|factura|rma|retour|return|reso|devoluci"
    r"|ean|gtin|upc|isbn|sku|asin|artikel|article|articolo|art[ií]culo|kunden|customer|client|ref|iban|konto"
    r"|account|serial|serien|série|serie|lot|batch|charge|iva|vat|ust|steuer|siret|siren|nif|cif)"
    rf"[{_LATIN}]*+"
    r"|(?:注文|追跡|伝票|問い合わせ|問合せ|お荷物)番号)"
    r"(?:[ .-]?(?:no|nr|number|nummer|numéro|n°|numero|número|#|id)\.?)?(?: ?[:#])?"
    r"(?: (?:is|was|lautet|ist|war|est|était|è|es|era))?(?: ?は)? ?\Z",
    re.IGNORECASE,
)
_CONTEXT = 40  # characters before a run searched for a label


def _masked_for_phones(folded: str, spans: list[tuple[int, int]]) -> str:
    """The (folded) text with every known non-phone token replaced by "X"s (same length, so offsets
    carry over; "X" is a letter, so no run can start inside a masked token)."""
    masks = list(spans)
    for pattern in _NOT_PHONE:
        for m in pattern.finditer(folded):
            token = m[0]
            if pattern is _NOT_PHONE[1]:
                head = _LETTERS_HEAD.match(token)
                if head is not None and head[0].lower() in _LABEL_PREFIXES and not token[len(head[0]) :].isalnum():
                    continue  # "tel-0301234567": a label glued to the number, not an identifier
            masks.append((m.start(), m.end()))
    parts: list[str] = []
    pos = 0
    for start, end in _merge(masks):
        if end <= pos:
            continue
        start = max(start, pos)
        parts.append(folded[pos:start])
        parts.append("X" * (end - start))
        pos = end
    parts.append(folded[pos:])
    return "".join(parts)


def _phone_shape(groups: list[str], has_plus: bool, labelled: bool, identifier: bool) -> bool:
    digits = "".join(groups)
    count = len(digits)
    if not 7 <= count <= 15:  # E.164 allows at most 15 digits; fewer than 7 is a quantity or a code
        return False
    if has_plus or labelled:
        return True
    if identifier:
        return False
    sizes = [len(g) for g in groups]
    if len(groups) == 1:
        # One unbroken run: EANs (13 digits), DPD/DHL/Hermes numbers (12-20), invoice and customer
        # numbers are written this way; phone numbers rarely are. Only a national number with its
        # trunk "0" and a plausible length (0301234567, 0612345678) counts.
        return digits[0] == "0" and digits[1] != "0" and 10 <= count <= 11
    if digits.startswith("00"):
        return count >= 10  # "0049 89 123456": international prefix and country code
    first = groups[0]
    if first[0] == "0":
        # National number with trunk "0" and an area code of 2-5 digits: 030/1234567, 0800 123 456,
        # 01 23 45 67 89, 06-12345678, 020 7946 0958, 03-1234-5678. At least 9 digits, so "01 02 03
        # 04" (a list) and "03.12.26" are not; 4-4-4 is the Japanese tracking-number layout.
        return 2 <= len(first) <= 5 and 9 <= count <= 12 and sizes != [4, 4, 4]
    if sizes == [3, 3, 4] and first[0] in "23456789":
        return True  # (555) 123-4567, 555-123-4567, 555.123.4567, and Italian mobiles 347 123 4567
    if sizes == [1, 3, 3, 4] and first == "1":
        return True  # 1-800-123-4567
    if sizes in ([3, 3, 3], [3, 2, 2, 2]) and first[0] in "6789":
        return True  # Spanish numbers have no trunk prefix: 612 345 678, 912 34 56 78
    return sizes in ([3, 6], [3, 7]) and first[0] == "3"  # Italian mobile: 347 1234567


def _phones(text: str, spans: list[tuple[int, int]]) -> list[_Hit]:
    folded = text.translate(_PHONE_TRANSLATION)
    masked = _masked_for_phones(folded, spans)
    hits: list[_Hit] = []

    def judge(start: int, end: int) -> bool:
        run = masked[start:end]
        if run.startswith("(") and ")" not in run:
            # "(0301234567)": the bracket encloses the whole number, not an area code
            start += len(run) - len(run[1:].lstrip())
            run = masked[start:end]
        groups = _GROUPS.findall(run)
        count = sum(len(g) for g in groups)
        if not 7 <= count <= 15:
            return False  # the common case, decided before any context is looked at (see _phone_shape)
        has_plus = run.lstrip("( ").startswith("+")
        context = folded[max(0, start - _CONTEXT) : start]
        labelled = _PHONE_LABEL.search(context) is not None
        identifier = not (has_plus or labelled) and _IDENTIFIER_LABEL.search(context) is not None
        if _phone_shape(groups, has_plus, labelled, identifier):
            shown = _shorten(text[start:end])
            hits.append(_Hit(PHONE_NUMBER, start, end, f"Phone numbers are not allowed: remove {shown}"))
            return True
        return False

    for m in _RUN.finditer(masked):
        if judge(m.start(), m.end()) or not _ALTERNATIVES.search(m[0]):
            continue
        # Rejected as a whole, but it may be two numbers: "030 1234567 / 0171 1234567".
        piece_start = m.start()
        for sep in _ALTERNATIVES.finditer(m[0]):
            judge(piece_start, m.start() + sep.start())
            piece_start = m.start() + sep.end()
        judge(piece_start, m.end())
    return hits


# --- HTML ----------------------------------------------------------------------------------------

# Real element names only: "<name>" or "<Order number>" as a placeholder is not markup, "<b>" is.
_HTML_ELEMENTS = frozenset(
    """
    a abbr address area article aside audio b base bdi bdo big blink blockquote body br button canvas
    caption center cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed
    fieldset figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr
    html i iframe img input ins kbd label legend li link main map mark marquee menu meta meter nav
    noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp script
    search section select slot small source span strike strong style sub summary sup svg table tbody
    td template textarea tfoot th thead time title tr track tt u ul var video wbr
    """.split()
)
# A start or end tag with well-formed attributes ("<a href=\"…\">", "<br/>", "<div style=x>").
# Each attribute piece is possessive, and a quoted value cannot run past the next "<", so a stray
# "<b " far from any ">" costs one scan up to the next "<".
_TAG = re.compile(
    r"</?(?P<name>[A-Za-z][A-Za-z0-9]*+)"
    r"(?:\s++[^\s\"'<>/=]++(?:\s*+=\s*+(?:\"[^\"<]*+\"|'[^'<]*+'|[^\s\"'<>=`]++))?)*+"
    r"\s*+/?>"
)
_DOCTYPE = re.compile(r"<!doctype\b[^<>]*+>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|(?P<name>[A-Za-z][A-Za-z0-9]{1,31}));")


def _html(text: str) -> list[_Hit]:
    hits: list[_Hit] = []

    def markup(start: int, end: int) -> None:
        shown = _shorten(text[start:end])
        hits.append(_Hit(HTML, start, end, f"HTML markup is not allowed: remove {shown}"))

    for m in _TAG.finditer(text):
        if m["name"].lower() in _HTML_ELEMENTS:
            markup(m.start(), m.end())
    for m in _DOCTYPE.finditer(text):
        markup(m.start(), m.end())
    # Comments with str.find rather than a lazy regex: "<!--" repeated without "-->" stays linear.
    pos = text.find("<!--")
    unterminated = False  # once a "<!--" has no "-->" after it, none of the later ones has either
    while pos != -1:
        close = -1 if unterminated else text.find("-->", pos + 4)
        unterminated = close == -1
        end = pos + 4 if unterminated else close + 3
        markup(pos, end)
        pos = text.find("<!--", end)
    for m in _ENTITY.finditer(text):
        if m["name"] is None or m["name"] + ";" in _HTML5_ENTITIES:
            hits.append(
                _Hit(
                    HTML,
                    m.start(),
                    m.end(),
                    f"HTML entities are not allowed: type the character itself instead of {m[0]}",
                )
            )
    return hits
