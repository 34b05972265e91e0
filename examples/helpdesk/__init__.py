"""A small but real host app: a flow engine behind a WhatsApp Cloud API webhook.

``python -m examples.helpdesk`` runs it with the sessiontrack sub-app mounted at
``/api/chatbot-sessions`` and a traffic simulator playing customers (see ``--help``).

- :mod:`.flow` reads a React Flow-shaped flow graph;
- :mod:`.engine` executes it and reports through the sessiontrack hooks only;
- :mod:`.whatsapp` parses and builds WhatsApp Cloud API payloads;
- :mod:`.sender` sends replies (recording them in the demo, or through the Cloud API);
- :mod:`.app` is the Starlette host app (lifespan, webhook, mount);
- :mod:`.simulator` plays customers through the real webhook.
"""
