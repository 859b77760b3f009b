from .embedding_head import HEAD_REGISTRY, BNNeck, EmbeddingHead, GeneralizedMeanPooling, ResizableClassifier, build_pooling
