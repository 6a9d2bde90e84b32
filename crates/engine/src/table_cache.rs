//! Open tables (file handle, index block, bloom filter), bounded in count.

use std::sync::Arc;

use crate::Result;
use crate::cache::BlockCache;
use crate::table::Table;
use crate::version::FileMeta;

#[derive(Debug)]
pub(crate) struct TableCache {
    tables: quick_cache::sync::Cache<u64, Arc<Table>>,
    blocks: Arc<BlockCache>,
}

impl TableCache {
    pub(crate) fn new(max_open: usize, blocks: Arc<BlockCache>) -> Self {
        Self {
            tables: quick_cache::sync::Cache::new(max_open),
            blocks,
        }
    }

    pub(crate) fn get(&self, file: &FileMeta) -> Result<Arc<Table>> {
        if let Some(table) = self.tables.get(&file.number) {
            return Ok(table);
        }
        let table = Arc::new(Table::open(
            &file.path,
            file.number,
            Arc::clone(&self.blocks),
        )?);
        self.tables.insert(file.number, Arc::clone(&table));
        Ok(table)
    }

    pub(crate) fn evict(&self, number: u64) {
        self.tables.remove(&number);
    }

    pub(crate) fn blocks(&self) -> &BlockCache {
        &self.blocks
    }
}
