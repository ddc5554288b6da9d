defmodule ArenaServerWeb.ErrorJSON do
  @moduledoc false
  # Renders the HTTP error pages (e.g. a crash in a plug) as {"errors": {"detail": "..."}}.
  def render(template, _assigns) do
    %{errors: %{detail: Phoenix.Controller.status_message_from_template(template)}}
  end
end
