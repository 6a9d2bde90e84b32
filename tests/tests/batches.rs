//! `BatchGet` and `BatchWrite`: bounded, concurrent across keys, ordered
//! within a key.

use strata_proto::v1::{
    BatchGetRequest, BatchWriteRequest, DeleteRequest, PutRequest, WriteOp, batch_get_result,
    write_op, write_result,
};
use strata_tests::Cluster;
use strata_tests::cluster::kv;
use tonic::Code;

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp {
        op: Some(write_op::Op::Put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            ..PutRequest::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_capped_run_every_item_and_keep_per_key_order() {
    let cluster = Cluster::start(1, &["--replication-factor", "1", "--last-write-wins"]).await;
    let mut client = kv(cluster.addr(0)).await;

    let too_many = BatchWriteRequest {
        ops: (0..1001).map(|i| put(&format!("k{i}"), "v")).collect(),
        consistency: None,
    };
    let err = client
        .batch_write(too_many)
        .await
        .expect_err("over the cap");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("1000"), "{err}");
    let err = client
        .batch_get(BatchGetRequest {
            keys: (0..1001)
                .map(|i| format!("k{i}").into_bytes().into())
                .collect(),
            consistency: None,
        })
        .await
        .expect_err("over the cap");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // 1000 items: every key written; key "same" written three times, last
    // write wins, so the batch's last item for it must be what is read. One
    // bad item fails alone.
    let mut ops: Vec<WriteOp> = (0..996)
        .map(|i| put(&format!("k{i}"), &format!("v{i}")))
        .collect();
    ops.insert(10, put("same", "first"));
    ops.insert(500, put("same", "second"));
    ops.push(WriteOp {
        op: Some(write_op::Op::Delete(DeleteRequest {
            key: Vec::new().into(),
            ..DeleteRequest::default()
        })),
    });
    ops.push(put("same", "third"));
    assert_eq!(ops.len(), 1000);
    let results = client
        .batch_write(BatchWriteRequest {
            ops,
            consistency: None,
        })
        .await
        .expect("batch")
        .into_inner()
        .results;
    assert_eq!(results.len(), 1000);
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.outcome, Some(write_result::Outcome::Error(_))))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, [998], "only the empty key fails");

    let mut keys: Vec<Vec<u8>> = (0..996).map(|i| format!("k{i}").into_bytes()).collect();
    keys.push(b"same".to_vec());
    let results = client
        .batch_get(BatchGetRequest {
            keys: keys.iter().map(|k| k.clone().into()).collect(),
            consistency: None,
        })
        .await
        .expect("batch get")
        .into_inner()
        .results;
    assert_eq!(results.len(), keys.len());
    for (i, (result, key)) in results.iter().zip(&keys).enumerate() {
        assert_eq!(&result.key[..], &key[..], "results in request order");
        let Some(batch_get_result::Outcome::Response(response)) = &result.outcome else {
            panic!("item {i}: {result:?}");
        };
        let expected = if i < 996 {
            format!("v{i}")
        } else {
            "third".into()
        };
        let values: Vec<&[u8]> = response.siblings.iter().map(|s| &s.value[..]).collect();
        assert_eq!(values, [expected.as_bytes()], "item {i}");
    }
}
