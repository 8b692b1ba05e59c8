"""Venues: the one :class:`~arbtui.venues.base.Venue` protocol and its implementations."""
