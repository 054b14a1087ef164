variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "recstack"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: lower-case letters, digits and '-', 2 to 21 characters, starting with a letter."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; split into private and public subnets, one of each per availability zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones (at least two: EKS, RDS Multi-AZ, ElastiCache and MSK spread over them)."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "give at least two availability zones."
  }
}

variable "cluster_version" {
  description = "Kubernetes version of the EKS cluster."
  type        = string
  default     = "1.33"
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "node_count" {
  description = "Nodes of the managed node group: min, desired and max (the HPAs scale pods inside these)."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 2, desired = 3, max = 10 }
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL store."
  type        = string
  default     = "db.m6g.large"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage of the PostgreSQL store in GiB (autoscaling up to 10x)."
  type        = number
  default     = 100
}

variable "db_engine_version" {
  description = "PostgreSQL major.minor version."
  type        = string
  default     = "16.4"
}

variable "redis_node_type" {
  description = "ElastiCache node type of the cache and online state."
  type        = string
  default     = "cache.m6g.large"
}

variable "kafka_version" {
  description = "Kafka version of the MSK cluster."
  type        = string
  default     = "3.6.0"
}

variable "kafka_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m5.large"
}

variable "kafka_volume_gb" {
  description = "EBS storage per broker in GiB."
  type        = number
  default     = 500
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the cluster, database and broker logs."
  type        = number
  default     = 365
}

variable "deletion_protection" {
  description = "Protect the database from deletion (turn off only to tear down a test footprint)."
  type        = bool
  default     = true
}

variable "redis_auth_token" {
  description = "Redis AUTH token (16 to 128 printable characters, no '@', '\"' or '/'); keep it in your secret store."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.redis_auth_token) >= 16 && length(var.redis_auth_token) <= 128
    error_message = "redis_auth_token must be 16 to 128 characters."
  }
}

variable "kafka_password" {
  description = "SCRAM password of the Kafka user `recstack` (at least 16 characters); keep it in your secret store."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.kafka_password) >= 16
    error_message = "kafka_password must be at least 16 characters."
  }
}
