"""Amazon S3 and S3-compatible stores (s3://bucket/prefix).

Lives here: `provider` (S3Provider), `writer` (PutObject or multipart), `verify` (what an answer proves),
`errors` (the error table), `auth` (credentials). May import: `providers` shared modules, boto3/botocore.
"""
