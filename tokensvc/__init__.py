"""tokensvc: a highly available Twilio Voice Access Token provider."""

__version__ = "0.1.0"
