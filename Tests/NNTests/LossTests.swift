import Foundation
import NN
import TensorCore
import TestSupport
import Testing

/// The losses against the PyTorch fixtures (value and gradient) and finite differences.
@Suite("Losses", .timed)
struct LossTests {
  /// Checks a loss fixture with `pred`/`target`: the loss and d loss / d pred.
  func checkRegression(_ name: String, _ loss: (Tensor, Tensor) throws -> Tensor) throws {
    let fixture = try Fixture(name)
    let prediction = try fixture.tensor("pred").requiringGrad()
    let value = try loss(prediction, fixture.tensor("target"))
    expectClose(value, try fixture.tensor("loss"), rtol: 1e-6, atol: 1e-7, "\(name) loss")
    try value.backward()
    expectClose(
      try #require(prediction.grad), try fixture.tensor("grad.pred"), rtol: 1e-5, atol: 1e-8,
      "\(name) grad")
  }

  @Test func meanSquaredErrorAndSmoothL1() throws {
    try checkRegression("mse") { try Loss.meanSquaredError($0, $1) }
    try checkRegression("smooth_l1") { try Loss.smoothL1($0, $1, beta: 1) }
    let beta = try Fixture("smooth_l1_beta0.5").scalar("beta")
    try checkRegression("smooth_l1_beta0.5") { try Loss.smoothL1($0, $1, beta: Float(beta)) }
    #expect(throws: TensorError.self) {
      try Loss.meanSquaredError(Tensor.zeros([2]), Tensor.zeros([3]))
    }
  }

  @Test func crossEntropyWithLabelSmoothing() throws {
    let fixture = try Fixture("cross_entropy_label_smoothing")
    let logits = try fixture.tensor("logits").requiringGrad()
    let loss = try Loss.crossEntropy(
      logits, labels: fixture.tensor("labels"),
      smoothing: Float(try fixture.scalar("label_smoothing")))
    expectClose(loss, try fixture.tensor("loss"), rtol: 1e-6, atol: 1e-7, "loss")
    try loss.backward()
    expectClose(try #require(logits.grad), try fixture.tensor("grad.logits"), "grad.logits")
    let error = #expect(throws: TensorError.self) {
      try Loss.crossEntropy(Tensor.zeros([2, 3]), labels: Tensor([0, 3]))
    }
    #expect(error?.message == "index 3.0 is not an integer in 0..<3")
  }

  @Test func infoNCEWithAQueueAndItsEnqueue() throws {
    let fixture = try Fixture("info_nce_queue")
    let q = try fixture.tensor("q").requiringGrad()
    let k = try fixture.tensor("k").requiringGrad()
    let (loss, logits) = try Loss.infoNCE(
      query: q, keys: k, queue: fixture.tensor("queue"),
      temperature: Float(try fixture.scalar("temperature")))
    expectClose(logits, try fixture.tensor("logits"), rtol: 1e-5, atol: 1e-5, "logits")
    expectClose(loss, try fixture.tensor("loss"), rtol: 1e-6, atol: 1e-6, "loss")
    try loss.backward()
    expectClose(try #require(q.grad), try fixture.tensor("grad.q"), "grad.q")
    #expect(k.grad == nil)  // no gradient through the keys
    var queue = try KeyQueue(keys: fixture.tensor("queue"), pointer: Int(try fixture.scalar("ptr")))
    try queue.enqueue(k.detached())
    #expect(queue.pointer == Int(try fixture.scalar("ptr_after")))
    expectClose(queue.keys, try fixture.tensor("queue_after"), rtol: 1e-6, atol: 1e-7, "queue")
    // Wrapping around: the pointer advances modulo the queue size.
    var small = try KeyQueue(keys: Tensor.zeros([3, 2]), pointer: 2)
    try small.enqueue(Tensor(shape: [2, 2], scalars: [3, 4, 0, 2]))
    #expect(small.pointer == 1)
    #expect(small.keys.scalars == [0, 1, 0, 0, 0.6, 0.8])
  }

  @Test func klDivergenceMatchesItsDefinitionAndGradients() throws {
    let teacher = try sampleTensor([3, 5], seed: 1)
    let student = try sampleTensor([3, 5], seed: 2)
    let kl = try Loss.klDivergence(teacherLogits: teacher, studentLogits: student)
    let p = try teacher.softmax(axis: 1).scalars
    let s = try student.softmax(axis: 1).scalars
    var expected = 0.0
    for i in p.indices { expected += Double(p[i]) * log(Double(p[i]) / Double(s[i])) }
    #expect(abs(Double(try kl.item()) - expected / 3) < 1e-6)
    try checkGradients([student], "kl") { t in
      try Loss.klDivergence(teacherLogits: teacher, studentLogits: t[0])
    }
    try checkGradients(
      [sampleTensor([2, 7], seed: 3), sampleTensor([2, 7], seed: 4)], "smooth_l1"
    ) { t in
      try Loss.smoothL1(t[0], t[1], beta: 0.5)
    }
    try checkGradients([sampleTensor([4, 6], seed: 5)], "cross_entropy") { t in
      try Loss.crossEntropy(t[0], labels: Tensor([0, 5, 2, 2]), smoothing: 0.2)
    }
  }
}
