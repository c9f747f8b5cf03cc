"""sora-relay: asynchronous AI video generation as an AWS serverless job service."""
