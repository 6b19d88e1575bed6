"""Azure Blob Storage (az://container/prefix).

Lives here: `provider` (AzureBlobProvider), `writer` (staged blocks + Put Block List), `errors`,
`options`. May import: `providers` shared modules, azure-storage-blob/azure-core.
"""
