"""What the bot shows: HTML, answers, cards, keyboards with their callback data, alert messages.

Views never import the handlers.
"""
