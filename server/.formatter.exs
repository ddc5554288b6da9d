[
  # Phoenix's own (import_deps: [:phoenix] needs deps/phoenix/.formatter.exs, which the offline
  # dependency sources do not have).
  locals_without_parens: [socket: 2, socket: 3, plug: 1, plug: 2, channel: 2, channel: 3],
  inputs: ["*.exs", "{config,lib}/**/*.{ex,exs}"]
]
