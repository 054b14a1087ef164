output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name …)."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "database_endpoint" {
  description = "host:port of the PostgreSQL store (RECSTACK_DATABASE_URL=postgresql://recstack:…@<this>/recstack?sslmode=require)."
  value       = aws_db_instance.this.endpoint
}

output "database_secret_arn" {
  description = "Secrets Manager secret holding the database master password."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "redis_url" {
  description = "RECSTACK_CACHE_URL without its auth token (rediss://:<token>@host:6379/0)."
  value       = "rediss://${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/0"
}

output "kafka_bootstrap_brokers" {
  description = "RECSTACK_BUS_URL host list (SASL/SCRAM over TLS, user recstack)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "data_bucket" {
  description = "S3 bucket for the lakehouse (lake/), MLflow artefacts (mlflow/) and backups (backups/)."
  value       = aws_s3_bucket.data.bucket
}

output "data_bucket_policy_arn" {
  description = "IAM policy granting the bucket to the recstack pods (attach to their IRSA role)."
  value       = aws_iam_policy.data_bucket.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting every data service."
  value       = aws_kms_key.this.arn
}
