"""POST /v1/embeddings: OpenAI-compatible embeddings on routes whose `apis` include
`embeddings`, reserved and charged for input tokens only."""
