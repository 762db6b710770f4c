"""The brand voice: one way of speaking on every channel, with each channel's tone and limits.

Every outbound message passes through `Voice.render` before it is queued. The voice is
configured in voice.toml (`config.py`), its templates are compiled in Jinja2's sandbox and
proved at load (`templates.py`), and `lint.py` says what an agent may want to change.
"""

from conversation.voice.config import VoiceConfig, VoiceError, load_voice, parse_voice
from conversation.voice.lint import LintWarning
from conversation.voice.render import Context, MissingVariable, Rendered, RenderFailed, UnknownIntent, Voice

__all__ = ["Context", "LintWarning", "MissingVariable", "RenderFailed", "Rendered", "UnknownIntent", "Voice",
           "VoiceConfig", "VoiceError", "load_voice", "parse_voice"]
