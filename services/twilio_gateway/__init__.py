"""The Twilio gateway: Media Streams sessions of phone calls."""
