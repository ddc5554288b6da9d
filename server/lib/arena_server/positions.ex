defmodule ArenaServer.Positions do
  @moduledoc """
  The last accepted position of every player, per room: a public ETS table owned by this
  process (started by the application supervisor).

  Rows are `{{topic, id}, owner_pid, name, color, x, y}`. `owner_pid` is the channel process that
  wrote the row with `claim/6`: a later join of the same id in the same room takes the row over,
  and then the older channel can neither move it (`update/5`) nor remove it (`release/3`).

  Rows are removed by the channel's `terminate/2` (`release/3`) and, as a safety net for channels
  that die without running it (e.g. killed), when the owner process goes down: `claim/6` makes
  this process monitor the owner.
  """
  use GenServer

  @table __MODULE__

  def start_link(_opts), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc "Store `id`'s position in `topic`, owned by the calling process (replaces any older row)."
  def claim(topic, id, name, color, x, y) do
    GenServer.call(__MODULE__, {:claim, self(), topic, id, name, color, x, y})
  end

  @doc "Move `id`'s row, only if the calling process still owns it. Returns true if it did."
  def update(topic, id, x, y) do
    owner = self()
    key = {topic, id}

    # select_replace keeps the key, so this is one atomic compare-and-set on the owner.
    :ets.select_replace(@table, [
      {{key, owner, :"$1", :"$2", :_, :_}, [], [{{{{topic, id}}, owner, :"$1", :"$2", x, y}}]}
    ]) == 1
  end

  @doc "Remove `id`'s row, only if it is still owned by `owner`."
  def release(topic, id, owner \\ self()) do
    :ets.match_delete(@table, {{topic, id}, owner, :_, :_, :_, :_})
    :ok
  end

  @doc "Every player in `topic`: `[%{\"id\", \"name\", \"color\", \"x\", \"y\"}]`, sorted by id."
  def list(topic) do
    # ordered_set + a partly bound key: only the rows of this topic are visited.
    @table
    |> :ets.select([
      {{{topic, :"$1"}, :_, :"$2", :"$3", :"$4", :"$5"}, [],
       [{{:"$1", :"$2", :"$3", :"$4", :"$5"}}]}
    ])
    |> Enum.map(fn {id, name, color, x, y} ->
      %{"id" => id, "name" => name, "color" => color, "x" => x, "y" => y}
    end)
  end

  @doc "The row of `id` in `topic`, or nil."
  def get(topic, id) do
    case :ets.lookup(@table, {topic, id}) do
      [{_key, owner, name, color, x, y}] -> %{owner: owner, name: name, color: color, x: x, y: y}
      [] -> nil
    end
  end

  # --- server

  @impl true
  def init(nil) do
    :ets.new(@table, [
      :ordered_set,
      :public,
      :named_table,
      read_concurrency: true,
      write_concurrency: true
    ])

    # monitors: owner pid => {monitor ref, MapSet of {topic, id} keys it claimed}
    {:ok, %{}}
  end

  @impl true
  def handle_call({:claim, owner, topic, id, name, color, x, y}, _from, owners) do
    key = {topic, id}
    :ets.insert(@table, {key, owner, name, color, x, y})

    owners =
      case owners do
        %{^owner => {ref, keys}} -> %{owners | owner => {ref, MapSet.put(keys, key)}}
        _ -> Map.put(owners, owner, {Process.monitor(owner), MapSet.new([key])})
      end

    {:reply, :ok, owners}
  end

  @impl true
  def handle_info({:DOWN, _ref, :process, owner, _reason}, owners) do
    {entry, owners} = Map.pop(owners, owner)

    with {_ref, keys} <- entry do
      for {topic, id} <- keys, do: release(topic, id, owner)
    end

    {:noreply, owners}
  end

  def handle_info(_msg, owners), do: {:noreply, owners}
end
