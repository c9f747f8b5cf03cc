"""DynamoDB, S3, SQS, EventBridge, secrets, outbound HTTP and the providers; they import only domain."""
