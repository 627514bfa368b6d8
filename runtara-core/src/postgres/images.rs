//! SQL of the PostgreSQL backend for images and for adopting unfinished instances.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::queries::{col, execute, instance_from_row, instances_sql, pg, query, query_one};
use crate::model::{
    now_ms, DeletedImage, ImageRecord, InstanceRecord, Liveness, NewImage, WorkerPool,
};
use crate::{Error, Result};

const IMAGE_COLUMNS: &str = "image_id, tenant_id, name, version, description, sha256, \
     size_bytes, created_at_ms, worker_min, worker_max, worker_instances";

fn image_from_row(row: &Row) -> Result<ImageRecord> {
    Ok(ImageRecord {
        image_id: col(row, 0)?,
        tenant_id: col(row, 1)?,
        name: col(row, 2)?,
        version: col(row, 3)?,
        description: col(row, 4)?,
        sha256: col(row, 5)?,
        size_bytes: col(row, 6)?,
        created_at_ms: col(row, 7)?,
        workers: worker_pool(col(row, 8)?, col(row, 9)?, col(row, 10)?),
    })
}

/// The worker pool of an image row, if it has one.
fn worker_pool(min: Option<i32>, max: Option<i32>, instances: Option<i32>) -> Option<WorkerPool> {
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    match (min, max, instances) {
        (Some(min), Some(max), Some(instances)) => Some(WorkerPool {
            min: count(min),
            max: count(max),
            instances: count(instances),
        }),
        _ => None,
    }
}

pub(crate) async fn get_image<C: GenericClient + Sync>(
    c: &C,
    image_id: &str,
) -> Result<Option<ImageRecord>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE image_id = $1");
    query(c, &sql, &[&image_id])
        .await?
        .first()
        .map(image_from_row)
        .transpose()
}

/// Inserts the next version of `(tenant, name)`. A transaction-scoped advisory lock on
/// the pair serializes concurrent registrations of one name across server nodes.
pub(crate) async fn insert_image(
    client: &mut deadpool_postgres::Object,
    new: &NewImage,
) -> Result<ImageRecord> {
    let tx = client.transaction().await.map_err(pg)?;
    let lock_key = format!("{}:{}/{}", new.tenant_id.len(), new.tenant_id, new.name);
    execute(
        &tx,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&lock_key],
    )
    .await?;
    let sql = format!(
        "INSERT INTO images (image_id, tenant_id, name, version, description, sha256, \
         size_bytes, created_at_ms) \
         SELECT $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, $6, $7 \
         FROM images WHERE tenant_id = $2 AND name = $3 \
         RETURNING {IMAGE_COLUMNS}"
    );
    let row = query_one(
        &tx,
        &sql,
        &[
            &new.image_id,
            &new.tenant_id,
            &new.name,
            &new.description,
            &new.sha256,
            &new.size_bytes,
            &now_ms(),
        ],
    )
    .await?;
    let image = image_from_row(&row)?;
    tx.commit().await.map_err(pg)?;
    Ok(image)
}

pub(crate) async fn list_images<C: GenericClient + Sync>(
    c: &C,
    tenant_id: &str,
) -> Result<Vec<ImageRecord>> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE tenant_id = $1 \
         ORDER BY created_at_ms DESC, name, version DESC"
    );
    query(c, &sql, &[&tenant_id])
        .await?
        .iter()
        .map(image_from_row)
        .collect()
}

/// Every image with a worker pool, by image id.
pub(crate) async fn list_pooled_images<C: GenericClient + Sync>(c: &C) -> Result<Vec<ImageRecord>> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE worker_max IS NOT NULL ORDER BY image_id"
    );
    query(c, &sql, &[])
        .await?
        .iter()
        .map(image_from_row)
        .collect()
}

/// Sets (or with `None` clears) how an image's instances run in workers.
pub(crate) async fn set_image_workers<C: GenericClient + Sync>(
    c: &C,
    image_id: &str,
    workers: Option<WorkerPool>,
) -> Result<ImageRecord> {
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let (min, max, instances) = match workers {
        Some(pool) => (
            Some(count(pool.min)),
            Some(count(pool.max)),
            Some(count(pool.instances)),
        ),
        None => (None, None, None),
    };
    let sql = format!(
        "UPDATE images SET worker_min = $2, worker_max = $3, worker_instances = $4 \
         WHERE image_id = $1 RETURNING {IMAGE_COLUMNS}"
    );
    match query(c, &sql, &[&image_id, &min, &max, &instances])
        .await?
        .first()
    {
        Some(row) => image_from_row(row),
        None => Err(Error::ImageNotFound {
            image_id: image_id.to_owned(),
        }),
    }
}

/// Deletes an image unless an unfinished instance uses it. The image row is locked
/// first, so a concurrent start of that image (which checks the row) cannot slip in.
pub(crate) async fn delete_image(
    client: &mut deadpool_postgres::Object,
    image_id: &str,
) -> Result<DeletedImage> {
    let tx = client.transaction().await.map_err(pg)?;
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE image_id = $1 FOR UPDATE");
    let image = match query(&tx, &sql, &[&image_id]).await?.first() {
        Some(row) => image_from_row(row)?,
        None => {
            return Err(Error::ImageNotFound {
                image_id: image_id.to_owned(),
            })
        }
    };
    let row = query_one(
        &tx,
        "SELECT COUNT(*) FROM instances WHERE image_id = $1 \
         AND status IN ('pending','running','suspended','sleeping','waiting')",
        &[&image_id],
    )
    .await?;
    let instances: i64 = col(&row, 0)?;
    if instances > 0 {
        return Err(Error::ImageInUse {
            image_id: image_id.to_owned(),
            instances,
        });
    }
    execute(&tx, "DELETE FROM images WHERE image_id = $1", &[&image_id]).await?;
    let row = query_one(
        &tx,
        "SELECT COUNT(*) FROM images WHERE sha256 = $1",
        &[&image.sha256],
    )
    .await?;
    let others: i64 = col(&row, 0)?;
    tx.commit().await.map_err(pg)?;
    Ok(DeletedImage {
        image,
        binary_still_used: others > 0,
    })
}

pub(crate) async fn list_running<C: GenericClient + Sync>(c: &C) -> Result<Vec<Liveness>> {
    let rows = query(
        c,
        "SELECT i.instance_id, i.image_id, GREATEST(i.heartbeat_at_ms, last.created_at_ms), \
             i.started_at_ms, i.created_at_ms \
         FROM instances AS i \
         LEFT JOIN LATERAL ( \
             SELECT c.created_at_ms FROM checkpoints AS c \
             WHERE c.instance_id = i.instance_id ORDER BY c.seq DESC LIMIT 1 \
         ) AS last ON true \
         WHERE i.status = 'running' ORDER BY i.created_at_ms, i.instance_id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Liveness {
                instance_id: col(row, 0)?,
                image_id: col(row, 1)?,
                heartbeat_at_ms: col(row, 2)?,
                started_at_ms: col(row, 3)?,
                created_at_ms: col(row, 4)?,
            })
        })
        .collect()
}

pub(crate) async fn list_unfinished<C: GenericClient + Sync>(c: &C) -> Result<Vec<InstanceRecord>> {
    let sql = instances_sql(
        "SELECT * FROM instances WHERE status IN ('pending','running','suspended','sleeping','waiting')",
        "ORDER BY i.created_at_ms, i.start_seq",
    );
    query(c, &sql, &[])
        .await?
        .iter()
        .map(instance_from_row)
        .collect()
}
