defmodule ArenaServer.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    children = [
      {Phoenix.PubSub, name: ArenaServer.PubSub},
      # Owns the ETS table of positions; started before the endpoint, so before any channel.
      ArenaServer.Positions,
      ArenaServerWeb.Presence,
      ArenaServerWeb.Endpoint
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: ArenaServer.Supervisor)
  end

  @impl true
  def config_change(changed, _new, removed) do
    ArenaServerWeb.Endpoint.config_change(changed, removed)
    :ok
  end
end
