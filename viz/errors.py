"""The one exception type whose message is written for the person using the app."""


class AtlasError(Exception):
    """Bad input or an unusable model: the message is shown to the user as it is."""
