defmodule ArenaServerWeb.ArenaChannel do
  @moduledoc """
  The `arena:<room>` channel: exactly the protocol of `examples/arena/PROTOCOL.md`.

  Client → server: `phx_join` (`id`, `name`, `color`, optional `x`/`y`), `move` (`x`, `y`, `seq`)
  and `chat` (`text`). Server → client: `presence_state`/`presence_diff`, `moved`, `chat`,
  `correct`. Every payload is validated; anything unexpected gets an error reply, and no payload
  can crash the channel.
  """
  use Phoenix.Channel
  require Logger

  alias ArenaServer.Positions
  alias ArenaServerWeb.Presence

  @w ArenaServer.width()
  @h ArenaServer.height()
  @max_speed ArenaServer.max_speed()
  @arena %{"w" => @w, "h" => @h, "max_speed" => @max_speed}

  # A spawn point is at least this far from the walls.
  @spawn_margin 40
  # Speed check: distance <= max_speed * dt * @speed_slack + @speed_allowance, dt capped at 1 s.
  @speed_slack 1.5
  @speed_allowance 48
  @max_dt 1.0

  @name_max 16
  @id_max 24
  @chat_max 200
  # Chat token bucket: 5 messages in a burst, refilling 1 per second.
  @chat_burst 5
  @chat_refill_per_ms 1 / 1000
  # `seq` is echoed in `moved`; kept to what a u64 holds, like a typed client would parse it.
  @seq_max 18_446_744_073_709_551_615

  ## Join

  @impl true
  def join("arena:" <> _room = topic, payload, socket) do
    case validate_join(payload) do
      {:ok, id, name, color, start} ->
        {x, y} = start || spawn_point()
        now = now_ms()
        :ok = Positions.claim(topic, id, name, color, x, y)

        socket =
          assign(socket,
            id: id,
            name: name,
            color: color,
            x: x,
            y: y,
            last_move_at: now,
            chat_tokens: @chat_burst * 1.0,
            chat_at: now
          )

        send(self(), :after_join)
        {:ok, join_reply(topic, id, name, color, x, y), socket}

      {:error, reason} ->
        {:error, %{"reason" => reason}}
    end
  end

  defp validate_join(payload) when is_map(payload) do
    with {:ok, id} <- validate_id(Map.get(payload, "id")),
         {:ok, name} <- validate_name(Map.get(payload, "name")),
         {:ok, color} <- validate_color(Map.get(payload, "color")) do
      {:ok, id, name, color, start_position(Map.get(payload, "x"), Map.get(payload, "y"))}
    end
  end

  defp validate_join(_payload), do: {:error, "invalid payload"}

  defp validate_id(id) when is_binary(id) and byte_size(id) in 1..@id_max do
    if id =~ ~r/\A[A-Za-z0-9_-]+\z/, do: {:ok, id}, else: {:error, "invalid id"}
  end

  defp validate_id(_), do: {:error, "invalid id"}

  # 1..16 characters (Unicode code points) after trimming whitespace, and no control characters
  # (category Cc), like the embedded server's `clean_name` (examples/arena/src/protocol.rs).
  defp validate_name(name) when is_binary(name) do
    with {:ok, trimmed, len} when len >= 1 <- trimmed_length(name, @name_max),
         false <- String.match?(trimmed, ~r/[\x{0}-\x{1F}\x{7F}-\x{9F}]/u) do
      {:ok, trimmed}
    else
      _ -> {:error, "invalid name"}
    end
  end

  defp validate_name(_), do: {:error, "invalid name"}

  defp validate_color(color) when is_integer(color) and color in 0..7, do: {:ok, color}
  defp validate_color(_), do: {:error, "invalid color"}

  # The start position the client sent (after a reconnect), if both are numbers inside the arena.
  defp start_position(x, y) do
    if in_arena?(x, y), do: {x * 1.0, y * 1.0}, else: nil
  end

  defp spawn_point do
    {random_between(@spawn_margin, @w - @spawn_margin),
     random_between(@spawn_margin, @h - @spawn_margin)}
  end

  # A float in lo..hi, rounded to 0.1 for readable logs and payloads.
  defp random_between(lo, hi), do: Float.round(lo + :rand.uniform() * (hi - lo), 1)

  # `players`: this player first (where it joins), then the others in the room by id.
  defp join_reply(topic, id, name, color, x, y) do
    me = %{"id" => id, "name" => name, "color" => color, "x" => x, "y" => y}
    others = topic |> Positions.list() |> Enum.reject(&(&1["id"] == id))

    %{
      "you" => id,
      "server" => "phoenix",
      "arena" => @arena,
      "x" => x,
      "y" => y,
      "players" => [me | others]
    }
  end

  @impl true
  def handle_info(:after_join, socket) do
    %{id: id, name: name, color: color, x: x, y: y} = socket.assigns

    meta = %{name: name, color: color, online_at: System.system_time(:second)}

    with {:error, reason} <- Presence.track(socket, id, meta) do
      Logger.warning("arena channel: Presence.track(#{inspect(id)}) failed: #{inspect(reason)}")
    end

    push(socket, "presence_state", Presence.list(socket))
    broadcast_from(socket, "moved", %{"id" => id, "x" => x, "y" => y, "seq" => 0})
    {:noreply, socket}
  end

  def handle_info(msg, socket) do
    Logger.debug("arena channel: unexpected message #{inspect(msg)}")
    {:noreply, socket}
  end

  ## move

  @impl true
  def handle_in("move", %{"x" => x, "y" => y, "seq" => seq}, socket)
      when is_number(x) and is_number(y) and is_integer(seq) and seq >= 0 and seq <= @seq_max do
    cond do
      not in_arena?(x, y) ->
        reject_move(socket, "out of bounds")

      too_fast?(socket.assigns, x, y) ->
        reject_move(socket, "too fast")

      true ->
        %{id: id} = socket.assigns
        {x, y} = {x * 1.0, y * 1.0}
        Positions.update(socket.topic, id, x, y)
        broadcast_from(socket, "moved", %{"id" => id, "x" => x, "y" => y, "seq" => seq})
        {:noreply, assign(socket, x: x, y: y, last_move_at: now_ms())}
    end
  end

  def handle_in("move", _payload, socket),
    do: {:reply, {:error, %{"reason" => "bad move"}}, socket}

  ## chat

  def handle_in("chat", %{"text" => text}, socket) when is_binary(text) do
    case trimmed_length(text, @chat_max) do
      {:ok, _trimmed, 0} ->
        {:reply, {:error, %{"reason" => "empty"}}, socket}

      {:ok, trimmed, _len} ->
        case take_chat_token(socket) do
          {:ok, socket} ->
            %{id: id, name: name} = socket.assigns

            broadcast(socket, "chat", %{
              "id" => id,
              "name" => name,
              "text" => trimmed,
              "at" => System.system_time(:millisecond)
            })

            {:reply, {:ok, %{}}, socket}

          {:error, socket} ->
            {:reply, {:error, %{"reason" => "rate limited"}}, socket}
        end

      :too_long ->
        {:reply, {:error, %{"reason" => "too long"}}, socket}
    end
  end

  def handle_in("chat", _payload, socket),
    do: {:reply, {:error, %{"reason" => "bad chat"}}, socket}

  ## anything else

  def handle_in(_event, _payload, socket),
    do: {:reply, {:error, %{"reason" => "unknown event"}}, socket}

  ## Leaving

  @impl true
  def terminate(_reason, socket) do
    # Only this channel's row: a newer join of the same id keeps its own.
    case socket.assigns do
      %{id: id} -> Positions.release(socket.topic, id)
      _ -> :ok
    end

    :ok
  end

  ## Helpers

  defp reject_move(socket, reason) do
    %{x: x, y: y} = socket.assigns
    push(socket, "correct", %{"x" => x, "y" => y, "reason" => reason})
    {:reply, {:error, %{"reason" => reason}}, socket}
  end

  defp in_arena?(x, y) when is_number(x) and is_number(y),
    do: x >= 0 and x <= @w and y >= 0 and y <= @h

  defp in_arena?(_x, _y), do: false

  defp too_fast?(%{x: x0, y: y0, last_move_at: t0}, x, y) do
    dt = min((now_ms() - t0) / 1000, @max_dt)
    dx = x - x0
    dy = y - y0
    :math.sqrt(dx * dx + dy * dy) > @max_speed * dt * @speed_slack + @speed_allowance
  end

  defp take_chat_token(socket) do
    %{chat_tokens: tokens, chat_at: at} = socket.assigns
    now = now_ms()
    tokens = min(@chat_burst * 1.0, tokens + (now - at) * @chat_refill_per_ms)

    if tokens >= 1.0 do
      {:ok, assign(socket, chat_tokens: tokens - 1.0, chat_at: now)}
    else
      {:error, assign(socket, chat_tokens: tokens, chat_at: now)}
    end
  end

  # Trims `s` and counts its code points: {:ok, trimmed, length}, or :too_long when it has more
  # than `max` (a code point is at most 4 bytes, so a longer string is not even counted).
  defp trimmed_length(s, max) do
    trimmed = String.trim(s)

    with true <- byte_size(trimmed) <= 4 * max,
         len when len <= max <- length(String.codepoints(trimmed)) do
      {:ok, trimmed, len}
    else
      _ -> :too_long
    end
  end

  defp now_ms, do: System.monotonic_time(:millisecond)
end
