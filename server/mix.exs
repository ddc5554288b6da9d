defmodule ArenaServer.MixProject do
  use Mix.Project

  # Phoenix 1.7 server for the arena example: the `arena:<room>` channel described in
  # ../examples/arena/PROTOCOL.md.
  #
  # Dependencies come from Hex (`mix deps.get`), unless ARENA_DEPS_PATH names a folder of
  # dependency sources (one sub-folder per package, e.g. ../../shared/phoenix-1.7/deps): then every
  # dependency is a local `path:` dep from there and no Hex is needed (that is what start.sh does).
  def project do
    [
      app: :arena_server,
      version: "0.1.0",
      elixir: "~> 1.14",
      elixirc_paths: ["lib"],
      start_permanent: Mix.env() == :prod,
      deps: deps(),
      releases: [arena_server: [include_executables_for: [:unix]]]
    ]
  end

  def application do
    [mod: {ArenaServer.Application, []}, extra_applications: [:logger, :runtime_tools]]
  end

  # The direct dependencies, as a normal Phoenix 1.7 app lists them (Hex picks the rest).
  @hex_deps [
    {:phoenix, "~> 1.7.24"},
    {:phoenix_pubsub, "~> 2.1"},
    {:bandit, "~> 1.11"},
    {:jason, "~> 1.4"}
  ]

  # With ARENA_DEPS_PATH: the whole tree (direct and transitive), each a path dep. The sources'
  # own mix.exs files refer to each other as `path: "../<name>"`, so every package is declared
  # here too, with `override: true`, the way ../../shared/phoenix-1.7/app/mix.exs does.
  @path_deps ~w(phoenix phoenix_pubsub phoenix_template plug plug_crypto mime telemetry
                websock websock_adapter bandit thousand_island hpax jason)a

  defp deps do
    case System.get_env("ARENA_DEPS_PATH") do
      dir when dir in [nil, ""] ->
        @hex_deps

      dir ->
        dir = Path.expand(dir)

        for dep <- @path_deps do
          {dep, path: Path.join(dir, Atom.to_string(dep)), override: true}
        end
    end
  end
end
