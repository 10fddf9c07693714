"""phonepatch services: the game gateway, the Twilio gateway and the all-in-one server."""
