"""OpenAI's Responses API on top of chat completions: read a Responses request (`request`), turn
it into a chat completions body (`translate`), and turn the chat answer back into a Response
object (`response`) or, streamed, into the Responses events in their documented order
(`events`). Pure functions and one stateful stream translator: no I/O, no money."""
