defmodule ArenaServer do
  @moduledoc """
  Phoenix server for the arena example of bevy_phoenix_channels.

  One channel, `arena:<room>` (`ArenaServerWeb.ArenaChannel`), implementing
  `examples/arena/PROTOCOL.md`: players join with an id, a name and a colour, send `move` and
  `chat`, and receive `moved`, `chat`, `correct` and Presence events. The last accepted position of
  every player is kept in `ArenaServer.Positions` (an ETS table), so a joiner gets a snapshot of the
  room.
  """

  # Arena constants (PROTOCOL.md, "Constants").
  @width 1200
  @height 800
  @max_speed 320

  def width, do: @width
  def height, do: @height
  def max_speed, do: @max_speed
end
