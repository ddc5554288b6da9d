defmodule ArenaServerWeb.StaticFiles do
  @moduledoc """
  Serves the folder named by `ARENA_STATIC_DIR` (application env `:static_dir`, set at boot by
  config/runtime.exs) at `/`, e.g. the web (wasm) build of the game; `/` gives its `index.html`.

  `Plug.Static` does the work (path checks, ETag, HEAD, `.wasm` as `application/wasm`); its options
  are computed once, at the first request, since the folder is only known at run time. When
  `:static_dir` is nil this plug does nothing.
  """
  @behaviour Plug

  @impl true
  def init(opts), do: opts

  @impl true
  def call(conn, _opts) do
    case static_opts() do
      nil -> conn
      {dir, static} -> serve(conn, dir, static)
    end
  end

  defp serve(%Plug.Conn{method: method, path_info: []} = conn, dir, _static)
       when method in ["GET", "HEAD"] do
    index = Path.join(dir, "index.html")

    if File.regular?(index) do
      conn
      |> Plug.Conn.put_resp_content_type("text/html")
      |> Plug.Conn.put_resp_header("cache-control", "no-cache")
      |> Plug.Conn.send_file(200, index)
      |> Plug.Conn.halt()
    else
      conn
    end
  end

  defp serve(conn, _dir, static), do: Plug.Static.call(conn, static)

  defp static_opts do
    case :persistent_term.get({__MODULE__, :opts}, :unset) do
      :unset ->
        opts =
          case Application.get_env(:arena_server, :static_dir) do
            nil ->
              nil

            dir ->
              # no-cache: browsers revalidate with the ETag, so a new build shows up at once.
              {dir,
               Plug.Static.init(
                 at: "/",
                 from: dir,
                 gzip: false,
                 cache_control_for_etags: "no-cache"
               )}
          end

        :persistent_term.put({__MODULE__, :opts}, opts)
        opts

      opts ->
        opts
    end
  end
end
