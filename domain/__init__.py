"""Pure domain code shared by the operator, the API and the model pod.

No I/O here, and no kopf, FastAPI, kubernetes or torch imports: resource
schemas, catalog parsing, units, and the budget and placement math.
"""
