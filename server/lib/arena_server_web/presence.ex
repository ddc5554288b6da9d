defmodule ArenaServerWeb.Presence do
  @moduledoc "Who is in each arena room: key = player id, meta = name, color, online_at."
  use Phoenix.Presence, otp_app: :arena_server, pubsub_server: ArenaServer.PubSub
end
