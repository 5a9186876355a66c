// The Element Plus components the staff pages use, each with only its own stylesheet; zh-CN texts.
import { ElButton, ElConfigProvider, ElContainer, ElEmpty, ElHeader, ElMain, ElResult, ElTag } from 'element-plus'
import 'element-plus/es/components/button/style/css'
import 'element-plus/es/components/config-provider/style/css'
import 'element-plus/es/components/container/style/css'
import 'element-plus/es/components/empty/style/css'
import 'element-plus/es/components/header/style/css'
import 'element-plus/es/components/main/style/css'
import 'element-plus/es/components/result/style/css'
import 'element-plus/es/components/tag/style/css'

export { default as zhCn } from 'element-plus/es/locale/lang/zh-cn'

const components = [ElButton, ElConfigProvider, ElContainer, ElEmpty, ElHeader, ElMain, ElResult, ElTag]

export default {
  install(app) {
    for (const component of components) app.use(component)
  },
}
