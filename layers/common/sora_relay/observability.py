"""The one Logger and Metrics of the service, imported everywhere.

There is no Powertools Tracer: the X-Ray SDK it needs pulls botocore into the layer (about 10 MB
zipped) and costs about 0.2 s of import at every cold start (docs/performance.md). Functions keep
`Tracing: Active`, so X-Ray still records each invocation and its init phase.
"""

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
