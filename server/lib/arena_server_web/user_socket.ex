defmodule ArenaServerWeb.UserSocket do
  @moduledoc "The game's socket (`/socket`): no connect params, one channel topic, `arena:<room>`."
  use Phoenix.Socket

  channel "arena:*", ArenaServerWeb.ArenaChannel

  @impl true
  def connect(_params, socket, _connect_info), do: {:ok, socket}

  @impl true
  def id(_socket), do: nil
end
