defmodule ArenaServerWeb.Endpoint do
  use Phoenix.Endpoint, otp_app: :arena_server

  # The game's socket: ws://HOST:PORT/socket/websocket?vsn=2.0.0 (websocket only).
  # A frame larger than 1 MiB closes the connection; anything smaller is parsed and, if it is
  # not what PROTOCOL.md asks for, answered with an error reply. ArenaServerWeb.SocketSerializer
  # is Phoenix's V2 serializer, except that an undecodable frame does not close the connection.
  socket "/socket", ArenaServerWeb.UserSocket,
    websocket: [
      max_frame_size: 1_048_576,
      serializer: [
        {Phoenix.Socket.V1.JSONSerializer, "~> 1.0.0"},
        {ArenaServerWeb.SocketSerializer, "~> 2.0.0"}
      ]
    ],
    longpoll: false

  # ARENA_STATIC_DIR (read at boot) is served at /; without it, GET / answers "ok".
  plug ArenaServerWeb.StaticFiles

  plug :fallback

  defp fallback(%Plug.Conn{method: method, request_path: "/"} = conn, _opts)
       when method in ["GET", "HEAD"] do
    conn |> Plug.Conn.put_resp_content_type("text/plain") |> Plug.Conn.send_resp(200, "ok")
  end

  defp fallback(conn, _opts) do
    conn |> Plug.Conn.put_resp_content_type("text/plain") |> Plug.Conn.send_resp(404, "not found")
  end
end
