import Config

# Everything here is read when the server boots (`mix phx.server` or a release), from these
# environment variables (see README.md):
#   PORT                HTTP port, default 4400
#   BIND                address to listen on, default 127.0.0.1; 0.0.0.0 (or "all") = every IPv4
#                       interface, :: = every IPv6 (and, on most systems, IPv4) interface
#   ARENA_CHECK_ORIGIN  comma-separated origins allowed to open the socket, e.g.
#                       "https://game.example.com"; unset = any origin (the game may be served anywhere)
#   ARENA_STATIC_DIR    folder served at / (index.html for /); unset: GET / answers "ok"
#   SECRET_KEY_BASE     optional; nothing signed is kept across restarts, so a random one is used
#   LOG_LEVEL           debug | info | warning | error (default info)

port =
  case Integer.parse(System.get_env("PORT", "4400")) do
    {port, ""} when port in 0..65535 -> port
    _ -> raise "PORT must be an integer in 0..65535, got: #{inspect(System.get_env("PORT"))}"
  end

bind = System.get_env("BIND", "127.0.0.1") |> String.trim()

ip =
  case bind do
    b when b in ["", "127.0.0.1", "localhost"] ->
      {127, 0, 0, 1}

    b when b in ["0.0.0.0", "all", "any", "*"] ->
      {0, 0, 0, 0}

    b when b in ["::", "[::]"] ->
      {0, 0, 0, 0, 0, 0, 0, 0}

    b ->
      case :inet.parse_address(String.to_charlist(String.trim(b, "[") |> String.trim("]"))) do
        {:ok, ip} -> ip
        {:error, _} -> raise "BIND must be an IP address (or 0.0.0.0 / ::), got: #{inspect(b)}"
      end
  end

check_origin =
  case System.get_env("ARENA_CHECK_ORIGIN", "") |> String.trim() do
    "" -> false
    list -> list |> String.split(",", trim: true) |> Enum.map(&String.trim/1)
  end

static_dir =
  case System.get_env("ARENA_STATIC_DIR", "") do
    "" ->
      nil

    dir ->
      dir = Path.expand(dir)
      File.dir?(dir) || raise "ARENA_STATIC_DIR is not a folder: #{dir}"
      dir
  end

secret_key_base =
  System.get_env("SECRET_KEY_BASE") || Base.encode64(:crypto.strong_rand_bytes(48))

config :arena_server, ArenaServerWeb.Endpoint,
  http: [
    ip: ip,
    port: port,
    # The socket-NIF inet backend stays fast with many sockets / a large accept backlog (see
    # ../../shared/phoenix-1.7/README.md); the protocol is the same with the stock one.
    thousand_island_options: [transport_options: [inet_backend: :socket]]
  ],
  check_origin: check_origin,
  secret_key_base: secret_key_base

config :arena_server, :static_dir, static_dir

case System.get_env("LOG_LEVEL") do
  level when level in ~w(debug info notice warning error) ->
    config :logger, level: String.to_atom(level)

  _ ->
    :ok
end
