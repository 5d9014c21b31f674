//! The fast path of `flowlog.v1.Collector/Ingest`: batches are read as received ([`RawBatch`]: identity fields
//! read, records checked in one scan without decoding) and their bytes stored as they are, instead of decoding every
//! record, encoding the batch again and freeing it all. Same wire API, same answers as the decoding path of
//! [`CollectorService`] (both run [`CollectorService::ingest_stream`]).
//!
//! [`CollectorRouter`] serves `Ingest` this way and hands every other method to the generated server.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Buf as _;
use flowlog_proto::v1::IngestAck;
use flowlog_proto::v1::collector_server::CollectorServer;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use crate::service::CollectorService;
use crate::store::wire::{RawBatch, WireError};

/// The gRPC path of the ingest method.
const INGEST_PATH: &str = "/flowlog.v1.Collector/Ingest";

/// A batch as the fast path receives it: read, or refused with the reason.
pub type Arriving = Result<RawBatch, WireError>;

/// `flowlog.v1.Collector` with `Ingest` on the fast path.
#[derive(Debug, Clone)]
pub struct CollectorRouter {
    service: CollectorService,
    generated: CollectorServer<CollectorService>,
    max_message_bytes: usize,
}

impl CollectorRouter {
    /// Serves `service`, accepting messages of at most `max_message_bytes`.
    pub fn new(service: CollectorService, max_message_bytes: usize) -> Self {
        CollectorRouter {
            generated: CollectorServer::new(service.clone())
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            service,
            max_message_bytes,
        }
    }
}

impl NamedService for CollectorRouter {
    const NAME: &'static str = "flowlog.v1.Collector";
}

impl<B> Service<http::Request<B>> for CollectorRouter
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != INGEST_PATH {
            return self.generated.call(request);
        }
        let service = self.service.clone();
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(limit), Some(limit));
            Ok(grpc.streaming(RawIngest(service), request).await)
        })
    }
}

/// The ingest method over raw batches.
struct RawIngest(CollectorService);

impl StreamingService<Arriving> for RawIngest {
    type Response = IngestAck;
    type ResponseStream = ReceiverStream<Result<IngestAck, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Arriving>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let peer = request.remote_addr();
            Ok(Response::new(
                service.ingest_stream(request.into_inner(), peer),
            ))
        })
    }
}

/// Encodes acknowledgements with prost; decodes batches into [`Arriving`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = IngestAck;
    type Decode = Arriving;
    type Encoder = tonic_prost::ProstEncoder<IngestAck>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Takes each message's bytes (without copying them) and reads them as a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Arriving;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Arriving>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(RawBatch::parse(bytes)))
    }
}
