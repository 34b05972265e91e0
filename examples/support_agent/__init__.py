"""A LangGraph support agent with a fake model, recorded by sessiontrack's LangGraph
adapter: ``python -m examples.support_agent`` serves the dashboard and plays customers."""
