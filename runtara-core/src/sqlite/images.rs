//! SQL of the SQLite backend for images and for adopting unfinished instances.

use rusqlite::{params, Connection, Row};

use super::queries::{execute, query_all, query_opt};
use crate::model::{
    now_ms, DeletedImage, ImageRecord, InstanceRecord, Liveness, NewImage, WorkerPool,
};
use crate::{Error, Result};

const IMAGE_COLUMNS: &str = "image_id, tenant_id, name, version, description, sha256, \
     size_bytes, created_at_ms, worker_min, worker_max, worker_instances";

fn image_from_row(row: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        image_id: row.get(0)?,
        tenant_id: row.get(1)?,
        name: row.get(2)?,
        version: row.get(3)?,
        description: row.get(4)?,
        sha256: row.get(5)?,
        size_bytes: row.get(6)?,
        created_at_ms: row.get(7)?,
        workers: worker_pool(row.get(8)?, row.get(9)?, row.get(10)?),
    })
}

/// The worker pool of an image row, if it has one.
fn worker_pool(min: Option<i64>, max: Option<i64>, instances: Option<i64>) -> Option<WorkerPool> {
    let count = |n: i64| u32::try_from(n).unwrap_or(0);
    match (min, max, instances) {
        (Some(min), Some(max), Some(instances)) => Some(WorkerPool {
            min: count(min),
            max: count(max),
            instances: count(instances),
        }),
        _ => None,
    }
}

pub(crate) fn get_image(c: &Connection, image_id: &str) -> Result<Option<ImageRecord>> {
    let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE image_id = ?1");
    query_opt(c, &sql, [image_id], image_from_row)
}

pub(crate) fn insert_image(c: &Connection, new: &NewImage) -> Result<ImageRecord> {
    // The writer thread runs one job at a time inside `BEGIN IMMEDIATE`, so reading the
    // highest version and inserting the next cannot interleave with another register.
    execute(
        c,
        "INSERT INTO images (image_id, tenant_id, name, version, description, sha256, \
         size_bytes, created_at_ms) \
         SELECT ?1, ?2, ?3, COALESCE(MAX(version), 0) + 1, ?4, ?5, ?6, ?7 \
         FROM images WHERE tenant_id = ?2 AND name = ?3",
        params![
            new.image_id,
            new.tenant_id,
            new.name,
            new.description,
            new.sha256,
            new.size_bytes,
            now_ms()
        ],
    )?;
    get_image(c, &new.image_id)?.ok_or_else(|| Error::ImageNotFound {
        image_id: new.image_id.clone(),
    })
}

pub(crate) fn list_images(c: &Connection, tenant_id: &str) -> Result<Vec<ImageRecord>> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE tenant_id = ?1 \
         ORDER BY created_at_ms DESC, name, version DESC"
    );
    query_all(c, &sql, [tenant_id], image_from_row)
}

/// Every image with a worker pool, by image id.
pub(crate) fn list_pooled_images(c: &Connection) -> Result<Vec<ImageRecord>> {
    let sql = format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE worker_max IS NOT NULL ORDER BY image_id"
    );
    query_all(c, &sql, [], image_from_row)
}

/// Sets (or with `None` clears) how an image's instances run in workers.
pub(crate) fn set_image_workers(
    c: &Connection,
    image_id: &str,
    workers: Option<WorkerPool>,
) -> Result<ImageRecord> {
    let (min, max, instances) = match workers {
        Some(pool) => (Some(pool.min), Some(pool.max), Some(pool.instances)),
        None => (None, None, None),
    };
    execute(
        c,
        "UPDATE images SET worker_min = ?2, worker_max = ?3, worker_instances = ?4 \
         WHERE image_id = ?1",
        params![image_id, min, max, instances],
    )?;
    get_image(c, image_id)?.ok_or_else(|| Error::ImageNotFound {
        image_id: image_id.to_owned(),
    })
}

pub(crate) fn delete_image(c: &Connection, image_id: &str) -> Result<DeletedImage> {
    let image = get_image(c, image_id)?.ok_or_else(|| Error::ImageNotFound {
        image_id: image_id.to_owned(),
    })?;
    let instances: i64 = query_opt(
        c,
        "SELECT COUNT(*) FROM instances WHERE image_id = ?1 \
         AND status IN ('pending','running','suspended','sleeping','waiting')",
        [image_id],
        |r| r.get(0),
    )?
    .unwrap_or(0);
    if instances > 0 {
        return Err(Error::ImageInUse {
            image_id: image_id.to_owned(),
            instances,
        });
    }
    execute(c, "DELETE FROM images WHERE image_id = ?1", [image_id])?;
    let others: i64 = query_opt(
        c,
        "SELECT COUNT(*) FROM images WHERE sha256 = ?1",
        [&image.sha256],
        |r| r.get(0),
    )?
    .unwrap_or(0);
    Ok(DeletedImage {
        image,
        binary_still_used: others > 0,
    })
}

pub(crate) fn list_running(c: &Connection) -> Result<Vec<Liveness>> {
    query_all(
        c,
        "SELECT instance_id, image_id, heartbeat_at_ms, started_at_ms, created_at_ms \
         FROM instances WHERE status = 'running' ORDER BY created_at_ms, instance_id",
        [],
        |r| {
            Ok(Liveness {
                instance_id: r.get(0)?,
                image_id: r.get(1)?,
                heartbeat_at_ms: r.get(2)?,
                started_at_ms: r.get(3)?,
                created_at_ms: r.get(4)?,
            })
        },
    )
}

pub(crate) fn list_unfinished(c: &Connection) -> Result<Vec<InstanceRecord>> {
    super::queries::instances_where(
        c,
        "status IN ('pending','running','suspended','sleeping','waiting') ORDER BY created_at_ms, rowid",
    )
}
