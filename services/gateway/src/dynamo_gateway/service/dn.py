"""X.509 subject DNs as the grid writes them, whatever form a proxy passes them in.

Grid tools (VOMS, FTS, CMS's SiteDB) name people by the OpenSSL "slash" form of their
certificate's subject, most significant RDN first: ``/DC=ch/DC=cern/OU=Users/CN=jdoe``.
nginx's ``$ssl_client_s_dn`` gives the RFC 2253 form instead, least significant first and
comma-separated (``CN=jdoe,OU=Users,DC=cern,DC=ch``); Apache and the legacy nginx variable
give the slash form. Both are turned into the slash form, and the RDNs that a proxy
certificate appends to its owner's DN (``/CN=proxy``, ``/CN=limited proxy`` and the
``/CN=<digits>`` of RFC 3820 proxies) are dropped, so that a person's proxies and their own
certificate map to the same account.
"""

from __future__ import annotations

import re

_PROXY_CN = re.compile(r"CN=(?:proxy|limited proxy|\d+)", re.IGNORECASE)
_HEX_PAIR = re.compile(r"\\([0-9A-Fa-f]{2})")


class DnError(ValueError):
    pass


def _split_rfc2253(text: str) -> list[str]:
    """RDNs of an RFC 2253 string, split on the commas that are not escaped."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            current.append(char + escaped)
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape_rfc2253(value: str) -> str:
    """Hex escapes (``\\C3\\A9``, how nginx writes UTF-8) and escaped specials."""
    raw = bytearray()
    position = 0
    while position < len(value):
        char = value[position]
        if char == "\\" and position + 1 < len(value):
            pair = _HEX_PAIR.match(value, position)
            if pair:
                raw.append(int(pair.group(1), 16))
                position += 3
                continue
            raw.extend(value[position + 1].encode())
            position += 2
            continue
        raw.extend(char.encode())
        position += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DnError("the DN is not valid UTF-8") from None


def parse_dn(text: str) -> list[str]:
    """The RDNs of a DN (``["DC=ch", "DC=cern", "CN=jdoe"]``), most significant first."""
    text = text.strip()
    if not text:
        raise DnError("empty DN")
    if text.startswith("/"):
        rdns = [part.strip() for part in text[1:].split("/")]
    else:
        rdns = [_unescape_rfc2253(part.strip()) for part in reversed(_split_rfc2253(text))]
    rdns = [rdn for rdn in rdns if rdn]
    for rdn in rdns:
        attribute, sep, value = rdn.partition("=")
        if not sep or not attribute.strip() or not value:
            raise DnError(f"malformed RDN {rdn!r} in DN {text!r}")
    if not rdns:
        raise DnError(f"no RDN in DN {text!r}")
    return rdns


def normalise_dn(text: str) -> str:
    """The slash form of a DN without proxy RDNs: the DN of the person behind a certificate.

    A DN made of proxy RDNs only is refused, since it names nobody.
    """
    rdns = parse_dn(text)
    while len(rdns) > 1 and _PROXY_CN.fullmatch(rdns[-1]):
        rdns.pop()
    if len(rdns) == 1 and _PROXY_CN.fullmatch(rdns[0]):
        raise DnError(f"DN {text!r} names a proxy but no owner")
    return "/" + "/".join(rdns)
