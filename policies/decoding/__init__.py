"""Decode, then judge: find encoded or obfuscated spans in a text and decode them, bounded, so
every policy can judge the decoded text beside the original (``policies.pipeline``).

Modules: ``prescan`` (one regex: may this text carry an encoding?), ``codecs`` (binary-to-text:
base64/32/16, ascii85, uuencode, base2048, emoji), ``ciphers`` (ROT13, Atbash, Morse, NATO,
Braille, Unicode tags; the registry of text decoders), ``lookalikes`` (Zalgo, leetspeak, emoji
letters), ``views`` (the bounded orchestration).
"""

from policies.decoding.ciphers import tag_text
from policies.decoding.prescan import looks_encoded
from policies.decoding.views import DecodedView, DecodeLimits, decoded_views

__all__ = ["DecodeLimits", "DecodedView", "decoded_views", "looks_encoded", "tag_text"]
