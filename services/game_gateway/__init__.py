"""The game gateway: websocket sessions of game clients."""
