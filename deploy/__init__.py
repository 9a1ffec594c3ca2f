"""Deployment: run configurations and their pre-flight, stack files, Kubernetes manifests,
the tracking services supervisor and the guards a pipeline command checks first. Imports
`sftcast` (ZenML only inside functions), never the command line."""
