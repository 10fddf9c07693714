"""Tools that stand in for a phone and for a game: the call simulator, the terminal client, the demo."""
