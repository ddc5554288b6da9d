import Config

config :phoenix, :json_library, Jason

# Listener, origin check and static files are set at boot from the environment: config/runtime.exs.
config :arena_server, ArenaServerWeb.Endpoint,
  adapter: Bandit.PhoenixAdapter,
  url: [host: "localhost"],
  pubsub_server: ArenaServer.PubSub,
  render_errors: [formats: [json: ArenaServerWeb.ErrorJSON], layout: false],
  server: true

if config_env() == :prod do
  config :logger, level: :info
end
