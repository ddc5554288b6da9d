defmodule ArenaServerWeb.SocketSerializer do
  @moduledoc """
  Phoenix's V2 JSON serializer (`vsn=2.0.0`, what phoenix.js and the Rust client speak), except
  that a frame it cannot decode does not take the connection down.

  With the stock serializer, a frame that is not a valid `[join_ref, ref, topic, event, payload]`
  (broken JSON, a number JSON decoders refuse such as `1e400`, a list that is too short, a
  malformed binary frame) raises in the socket process: the connection closes, with every channel
  on it, and a crash report holding the whole frame is logged. Here such a frame becomes an event
  on the reserved `phoenix` topic, which Phoenix answers with an error reply
  (`{"reason": "unmatched topic"}`, no ref since none could be read), and a one-line warning.
  """
  @behaviour Phoenix.Socket.Serializer

  require Logger
  alias Phoenix.Socket.Message
  alias Phoenix.Socket.V2.JSONSerializer, as: V2

  @impl true
  defdelegate fastlane!(broadcast), to: V2

  @impl true
  defdelegate encode!(message), to: V2

  @impl true
  def decode!(raw, opts) do
    case V2.decode!(raw, opts) do
      %Message{topic: topic, event: event} = message when is_binary(topic) and is_binary(event) ->
        message

      _ ->
        bad_frame(raw, "topic or event is not a string")
    end
  rescue
    e -> bad_frame(raw, Exception.message(e))
  end

  defp bad_frame(raw, why) do
    frame = IO.iodata_to_binary(raw)

    Logger.warning(
      "ignoring a socket frame that is not a Phoenix V2 message (#{byte_size(frame)} bytes, " <>
        "#{inspect(binary_part(frame, 0, min(byte_size(frame), 120)))}): " <>
        String.slice(why, 0, 200)
    )

    %Message{topic: "phoenix", event: "bad_frame", payload: %{}, ref: nil, join_ref: nil}
  end
end
